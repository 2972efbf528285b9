"""Command line of `containerd-shim-lxcfs-v2`: one mode per action, dispatched.

The arguments are parsed in shim/entry/args.py. `start` and `delete` run on containerd's
critical path for every container, so each mode is imported only when it is chosen and only
the serving path imports anything heavy.
"""

from __future__ import annotations

import os
import sys

from shim import trace
from shim.entry.args import HELP, UsageError, parse
from shim.identity import RUNTIME_NAME, SHIM_NAME, __version__


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"{e}\n\n{HELP}", file=sys.stderr, end="")
        return 2
    trace.mark(f"{args.action or 'serve'}: main")
    if args.help:
        print(HELP, end="")
        return 0
    if args.version:
        print(f"{SHIM_NAME}:\n  Version:  {__version__}\n  Runtime:  {RUNTIME_NAME}")
        return 0
    if args.info:
        from shim.entry.info import print_info

        return print_info()
    if args.zygote:
        from shim.entry.zygote import serve as serve_zygote

        return serve_zygote(args.zygote)
    if args.action == "start":
        from shim.entry.start import start

        return start(args)
    if args.action == "check":
        from shim.entry.check import main as check

        return check()
    if args.action == "delete":
        from shim.entry.cleanup import delete

        return delete(args)
    if not args.namespace:
        print(f"{SHIM_NAME}: -namespace is required\n\n{HELP}", file=sys.stderr, end="")
        return 2
    from shim.entry.daemon import serve

    return serve(args)


def run() -> None:
    """The launcher's entry: `main()`, then leave without finalizing the interpreter.

    Finalization (module teardown, GC of every object) costs ~4 ms per `start` and per
    `delete`, both on containerd's critical path, and buys nothing here: output is flushed
    below, the serving process has closed its own resources when main returns, and logging
    flushes every record. An exception still takes the normal exit (traceback, status 1).
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib is not imported on this path
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
