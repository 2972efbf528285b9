"""The shim's command line, parsed: containerd's shim v2 binary contract.

containerd runs `<shim> -namespace NS -address ADDR -publish-binary BIN -id ID start` (and
`delete`), with Go `flag` conventions: `-flag value`, `-flag=value`, `--flag`, bool flags take
no value, parsing stops at the first bare word, which is the action; no action means "serve"
(how `start` launches the long-running process).

A module of its own, below both `cli` (which dispatches on the result) and `daemon` (which
parses the argv a zygote's spare is handed), so neither imports the other. Parsed by hand
instead of with argparse (~15 ms): `start` and `delete` run on containerd's critical path.
"""

from __future__ import annotations

from types import SimpleNamespace

from shim.identity import RUNTIME_NAME, SHIM_NAME

#: flag -> attribute, for flags that take a value (hidden ones are set by `start` itself)
_STRINGS = {
    "namespace": "namespace",
    "address": "address",
    "publish-binary": "publish_binary",
    "id": "id",
    "bundle": "bundle",
    "socket": "socket",
    "group": "group",
    "zygote": "zygote",
    "task-api": "task_api",
}
_BOOLS = {
    "debug": "debug",
    "v": "version",
    "version": "version",
    "info": "info",
    "h": "help",
    "help": "help",
}
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
    args = SimpleNamespace(
        **{a: "" for a in _STRINGS.values()}, **{a: False for a in _BOOLS.values()}, action=None
    )
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
