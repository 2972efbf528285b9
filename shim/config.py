"""The operator's choice of task API, and what `start` prints for it.

containerd cannot tell the shim which task APIs it speaks (`MAX_SHIM_VERSION` is 2 on 1.7
and 2.x alike), so the plain ttrpc address, understood by 1.6, 1.7 and 2.x, is the default
and anything richer is the operator's explicit choice:

* `v2`        plain `unix://` address: ttrpc, `containerd.task.v2.Task` (default);
* `v3-ttrpc`  `{"version":3,"address":"unix://...","protocol":"ttrpc"}`: containerd 2.x only;
* `v3-grpc`   `{"version":3,"address":"/run/...","protocol":"grpc"}`: containerd 2.x only,
  gRPC dials the bare socket path.

Two ways to set it; the runtime options win because they are per runtime handler:

1. runtime options on `start`'s stdin, a `runtimeoptions.v1.Options` Any (what CRI sends for
   a non-runc runtime with an `options` table): `task_api = "..."` in its TOML
   `config_body` (containerd 2.x) or in the TOML file named by `config_path`;
2. the environment variable `CONTAINERD_SHIM_LXCFS_TASK_API` (containerd 2.x: the shim
   manager's `env` list; any version: containerd's own environment).

Stdlib only: `start` and `-info` import this.
"""

from __future__ import annotations

import os
import sys

from shim import wire

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

_RUNTIMEOPTIONS = "runtimeoptions.v1.Options"


class ConfigError(ValueError):
    """The operator asked for something invalid: `start` fails loudly rather than guess."""


def _check(mode: str, source: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"{source}: task API {mode!r} is not one of {', '.join(MODES)}")
    return mode


def _runtime_options(raw: bytes) -> tuple[str, bytes] | None:
    """(config_path, config_body) when `raw` is a runtimeoptions.v1.Options Any, else None.

    Anything else (empty stdin, runc Options, bytes that are not an Any) carries no choice.
    """
    if not raw:
        return None
    try:
        type_url, value = wire.unpack_any(raw)
        if type_url.rsplit("/", 1)[-1] != _RUNTIMEOPTIONS:
            return None
        path, body = "", b""
        for number, field in wire.fields(value):
            if number == 2 and isinstance(field, bytes):
                path = field.decode()
            elif number == 3 and isinstance(field, bytes):
                body = field
    except (ValueError, UnicodeDecodeError):
        return None
    return path, body


def from_options(raw: bytes) -> str | None:
    """The task API named in the runtime options (start's stdin), None if they name none."""
    found = _runtime_options(raw)
    if found is None:
        return None
    path, body = found
    source = "runtime options config_body"
    if not body and path:
        source = path
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError as e:
            raise ConfigError(f"runtime options config_path: {e}") from e
    if not body:
        return None
    import tomllib  # only TOML runtime options need it: ~8 ms off every `start`

    try:
        table = tomllib.loads(body.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: {e}") from e
    value = table.get(OPTION)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {OPTION} must be a string")
    return _check(value, source)


def resolve(raw_options: bytes, environ: Mapping[str, str]) -> str:
    """The task API to serve: runtime options, else the environment, else `v2`."""
    chosen = from_options(raw_options)
    if chosen is not None:
        return chosen
    value = environ.get(ENV, "").strip()
    return _check(value, ENV) if value else V2


def start_output(mode: str, socket_path: str) -> str:
    """What `start` prints (and containerd parses) for a shim serving `mode` on the socket."""
    if mode == V2:
        return "unix://" + socket_path
    import json  # only the v3 modes print JSON: ~15 ms off the default `start`

    if mode == V3_GRPC:
        # containerd 2.x net.Dial("unix", address)s a gRPC address: a bare path.
        return json.dumps({"version": 3, "address": socket_path, "protocol": "grpc"},
                          separators=(",", ":"))
    address = "unix://" + socket_path
    if mode == V3_TTRPC:
        return json.dumps({"version": 3, "address": address, "protocol": "ttrpc"},
                          separators=(",", ":"))
    return address


def read_stdin_options() -> bytes:
    """containerd writes the runtime options Any to stdin (or gives /dev/null)."""
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return b""
    return stdin.buffer.read()


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
