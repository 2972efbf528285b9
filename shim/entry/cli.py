"""Command line of `containerd-shim-lxcfs-v2`: containerd's shim v2 binary contract.

containerd runs `<shim> -namespace NS -address ADDR -publish-binary BIN -id ID start` (and
`delete`), with Go `flag` conventions: `-flag value`, `-flag=value`, `--flag`, bool flags take
no value, parsing stops at the first bare word, which is the action; no action means "serve"
(how `start` launches the long-running process).

`start` and `delete` run on containerd's critical path for every container, so this module
parses by hand instead of importing argparse (~15 ms), and only the serving path imports
anything heavy.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from shim import trace
from shim.identity import RUNTIME_NAME, SHIM_NAME, __version__

#: flag -> attribute, for flags that take a value (hidden ones are set by `start` itself)
_STRINGS = {
    "namespace": "namespace", "address": "address", "publish-binary": "publish_binary",
    "id": "id", "bundle": "bundle", "socket": "socket", "group": "group",
    "zygote": "zygote", "task-api": "task_api",
}
_BOOLS = {"debug": "debug", "v": "version", "version": "version", "info": "info",
          "h": "help", "help": "help"}
_ACTIONS = ("start", "delete", "check")

HELP = f"""usage: {SHIM_NAME} [flags] [start|delete|check]

containerd runtime shim for {RUNTIME_NAME}: runs containers with runc and bind-mounts a
per-container FUSE view over /proc/meminfo, cpuinfo, stat, uptime, loadavg, diskstats,
swaps, slabinfo and /sys/devices/system/cpu/online, so that the container sees its own
cgroup limits. containerd runs this binary; use it with
`ctr run --runtime {RUNTIME_NAME} ...` or a Kubernetes RuntimeClass (handler lxcfs).

actions:
  start       launch (or reuse) the pod's shim and print its address
  delete      clean up after a dead shim and print a DeleteResponse
  check       say what this node has and needs for {RUNTIME_NAME}, one verdict a
              line; exit 1 when something required is missing (CONTAINERD=<command>
              selects the containerd whose config is read)
  (none)      serve (what `start` launches)

flags:
  -namespace string       containerd namespace
  -address string         containerd's gRPC socket
  -publish-binary string  containerd binary (accepted, unused: events go over ttrpc)
  -id string              task (container) id
  -bundle string          bundle path (delete)
  -socket string          serve on this unix socket instead of the inherited fd 3
  -debug                  debug logging
  -v                      print the version and exit
  -info                   print RuntimeInfo (protobuf) and exit (containerd 2.x)
"""


class UsageError(ValueError):
    pass


def parse(argv: list[str]) -> SimpleNamespace:
    """Go `flag` semantics for our flags; unknown flags are errors, as in Go."""
    args = SimpleNamespace(**{a: "" for a in _STRINGS.values()},
                           **{a: False for a in _BOOLS.values()}, action=None)
    args.task_api = "v2"
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            if word not in _ACTIONS:
                raise UsageError(f"unknown action {word!r} (start, delete or check)")
            args.action = word
            break
        name, has_value, value = word.lstrip("-").partition("=")
        if name in _BOOLS:
            if has_value and value.lower() not in ("1", "0", "t", "f", "true", "false"):
                raise UsageError(f"invalid boolean value {value!r} for -{name}")
            setattr(args, _BOOLS[name], not has_value or value.lower() in ("1", "t", "true"))
        elif name in _STRINGS:
            if not has_value:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
                i += 1
            setattr(args, _STRINGS[name], value)
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
    return args


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
