"""The task API `start` offers, and what it prints for it.

* `v2`        ttrpc, `containerd.task.v2.Task`: every containerd (1.6, 1.7, 2.x);
* `v3-ttrpc`  ttrpc, `containerd.task.v3.Task`: containerd 2.x;
* `v3-grpc`   gRPC, `containerd.task.v3.Task`: no containerd release can use it (below).

Without a setting, `start` offers the best API the containerd running it announces: one
that speaks the bootstrap protocol (2.3+, shim/entry/bootstrap.py) gets v3 ttrpc, as its own runc
shim does; every other start (1.6 to 2.2, which look alike: `MAX_SHIM_VERSION` is 2 on all
of them) gets v2, which all of them speak.

An operator's setting wins, per runtime handler first:

1. runtime options (shim/options.py): `task_api = "..."` in the runtimeoptions TOML
   (`config_body` on containerd 2.x, or the file `config_path` names);
2. the environment variable `CONTAINERD_SHIM_LXCFS_TASK_API` (containerd 2.x: the shim
   manager's `env` list; any version: containerd's own environment).

except where containerd is known to drop the connection: containerd 2.0 up to 2.4 (the
newest release tested) close a gRPC shim connection before the first call (their
`grpcDialContext` watches a client that starts IDLE and takes IDLE for closed), and 1.6/1.7
know no v3 at all, so `v3-grpc` is served as v3 ttrpc (2.3+) or v2 (older) instead, and the
log and `-info` say why. A containerd newer than that gets gRPC when asked for.

Stdlib only: `start` and `-info` import this.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms of every start/delete
if TYPE_CHECKING:
    from collections.abc import Mapping

ENV = "CONTAINERD_SHIM_LXCFS_TASK_API"
#: Key in the runtime options TOML (config_body or the config_path file).
OPTION = "task_api"

V2 = "v2"
V3_TTRPC = "v3-ttrpc"
V3_GRPC = "v3-grpc"
MODES = (V2, V3_TTRPC, V3_GRPC)

#: The newest containerd (major, minor) known to drop gRPC shim connections at once.
GRPC_DROPPED_THROUGH = (2, 4)
_IDLE = (
    "close a gRPC shim connection before the first call (core/runtime/v2/shim.go "
    "grpcDialContext: the client starts IDLE and its close monitor takes IDLE for closed)"
)
GRPC_DROPPED = "containerd {version} would {idle}: v3-grpc is served as {mode}"
GRPC_LEGACY = (
    "containerd before 2.3 cannot use v3-grpc (1.6/1.7 know no task v3, 2.0-2.2 "
    "{idle}): served as {mode}"
)


class ConfigError(ValueError):
    """The operator asked for something invalid: `start` fails loudly rather than guess."""


def _check(mode: str, source: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"{source}: task API {mode!r} is not one of {', '.join(MODES)}")
    return mode


def from_options(opts: Mapping[str, object]) -> str | None:
    """The task API the decoded runtime options name, None if they name none."""
    value = opts.get(OPTION)
    if not value:
        return None
    return _check(str(value), f"runtime options {OPTION}")


def _version(text: str) -> tuple[int, int] | None:
    """(major, minor) of a containerd version string such as `v2.4.2` or `2.5.0-rc.1`."""
    parts = text.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def grpc_dropped(bootstrap: bool, containerd_version: str) -> bool:
    """Whether the containerd running `start` is known to lose a gRPC shim at once.

    A start without the bootstrap protocol comes from 1.6/1.7 (no v3 at all) or 2.0-2.2
    (gRPC dropped); a bootstrap one names its version. Unparseable versions count as known
    to drop it: handing out an address that fails is worse than ttrpc.
    """
    if not bootstrap:
        return True
    version = _version(containerd_version)
    return version is None or version <= GRPC_DROPPED_THROUGH


def resolve(
    opts: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    bootstrap: bool = False,
    containerd_version: str = "",
) -> tuple[str, str]:
    """(task API to serve, note for the log when the setting could not be followed)."""
    chosen = from_options(opts)
    if chosen is None:
        value = environ.get(ENV, "").strip()
        chosen = _check(value, ENV) if value else None
    if chosen is None:
        return (V3_TTRPC if bootstrap else V2), ""
    if chosen == V3_GRPC and grpc_dropped(bootstrap, containerd_version):
        mode = V3_TTRPC if bootstrap else V2
        if not bootstrap:
            return mode, GRPC_LEGACY.format(idle=_IDLE, mode=mode)
        return mode, GRPC_DROPPED.format(
            version=containerd_version or "(no version given)", idle=_IDLE, mode=mode
        )
    return chosen, ""


def start_output(mode: str, socket_path: str, *, bootstrap: bool = False) -> bytes:
    """What `start` prints (and containerd parses) for a shim serving `mode` on the socket.

    containerd 2.3+ reads a BootstrapResult protobuf (version 2 or 3, `unix://` address,
    protocol); older ones the plain ttrpc address or bootstrap JSON.
    """
    if bootstrap:
        from shim.entry.bootstrap import result

        if mode == V3_GRPC:
            return result(3, socket_path, "grpc")  # grpc-go dials a bare path
        return result(2 if mode == V2 else 3, "unix://" + socket_path, "ttrpc")
    if mode == V2:
        return b"unix://" + socket_path.encode() + b"\n"
    import json  # only the v3 modes print JSON: ~15 ms off the default `start`

    if mode == V3_GRPC:
        # containerd 2.x net.Dial("unix", address)s a gRPC address: a bare path.
        doc = {"version": 3, "address": socket_path, "protocol": "grpc"}
    else:
        doc = {"version": 3, "address": "unix://" + socket_path, "protocol": "ttrpc"}
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def read_stdin() -> bytes:
    """containerd writes BootstrapParams or the runtime options Any to stdin (or /dev/null).

    At most 10 MiB, as containerd's own shims read (more is refused, not truncated).
    """
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return b""
    data = stdin.buffer.read(_STDIN_LIMIT + 1)
    if len(data) > _STDIN_LIMIT:
        raise ConfigError(f"stdin holds more than {_STDIN_LIMIT} bytes")
    return data


_STDIN_LIMIT = 10 << 20


#: Where `start` records what a running shim serves, so a later `start` for the same group
#: prints the matching address whatever the setting says by then.
RECORD = "task-api"


def write_record(state: str, mode: str) -> None:
    os.makedirs(state, mode=0o711, exist_ok=True)
    tmp = os.path.join(state, RECORD + ".tmp")
    with open(tmp, "w") as f:
        f.write(mode)
    os.replace(tmp, os.path.join(state, RECORD))


def read_record(state: str) -> str | None:
    try:
        with open(os.path.join(state, RECORD)) as f:
            mode = f.read().strip()
    except OSError:
        return None
    return mode if mode in MODES else None
