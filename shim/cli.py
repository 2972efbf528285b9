"""Command line of `containerd-shim-lxcfs-v2`: containerd's shim v2 binary contract.

containerd runs `<shim> -namespace NS -address ADDR -publish-binary BIN -id ID start` (and
`delete`), with Go `flag` conventions: `-flag value`, `-flag=value`, `--flag`. The first bare
word is the action; no action means "serve" (how `start` launches the long-running process).
Only the serving path imports anything heavy.
"""

from __future__ import annotations

import argparse
import sys

from shim.identity import RUNTIME_NAME, SHIM_NAME, __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=SHIM_NAME,
        allow_abbrev=False,
        description=(
            f"containerd runtime shim for {RUNTIME_NAME}: runs containers with runc and "
            "bind-mounts a per-container FUSE view over /proc/meminfo and friends so that "
            "the container sees its own cgroup limits. containerd runs this binary; use it "
            f"with `ctr run --runtime {RUNTIME_NAME} ...`."
        ),
        epilog="actions: start (launch or reuse a shim, print its address), "
        "delete (clean up after a dead shim, print a DeleteResponse); none = serve.",
    )

    def flag(name: str, **kw: object) -> None:
        p.add_argument(f"-{name}", f"--{name}", **kw)  # type: ignore[arg-type]

    flag("namespace", default="", help="containerd namespace")
    flag("address", default="", help="containerd's gRPC socket")
    flag("publish-binary", dest="publish_binary", default="",
         help="containerd binary (events fallback)")
    flag("id", default="", help="task (container) id")
    flag("bundle", default="", help="bundle path (delete)")
    flag("socket", default="", help="serve on this unix socket instead of inherited fd 3")
    flag("group", default="", help=argparse.SUPPRESS)
    flag("task-api", dest="task_api", default="v2", help=argparse.SUPPRESS)  # set by start
    flag("debug", action="store_true", help="debug logging")
    flag("v", dest="version", action="store_true", help="print the version and exit")
    flag("version", dest="version", action="store_true", help=argparse.SUPPRESS)
    flag("info", action="store_true", help="print RuntimeInfo (protobuf) and exit (containerd 2.x)")
    p.add_argument("action", nargs="?", choices=("start", "delete"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"{SHIM_NAME}:\n  Version:  {__version__}\n  Runtime:  {RUNTIME_NAME}")
        return 0
    if args.info:
        from shim.info import print_info

        return print_info()
    if args.action == "start":
        from shim.start import start

        return start(args)
    if args.action == "delete":
        from shim.cleanup import delete

        return delete(args)
    if not args.namespace:
        print(f"{SHIM_NAME}: -namespace is required", file=sys.stderr)
        return 2
    from shim.daemon import serve

    return serve(args)
