"""`-info`: print `containerd.types.RuntimeInfo` (protobuf) for containerd 2.x.

containerd 2.x's CRI runs `<shim> -info` per runtime handler at startup (kubelet learns
recursive read-only mount and user namespace support from it), and its task manager runs it
before creating a task with idmapped mounts, failing the create if `-info` fails. It is
called without -namespace, without a bundle cwd, with the runtime options Any on stdin.

Honest data, as containerd-shim-runc-v2 reports it: the containers run under runc, so the
OCI features are `runc features` verbatim (left out when runc cannot report them); the
options are echoed; the annotations say which task API `start` offers a containerd 2.3+
that runs it without saying more (only containerd 2.x runs `-info`), and, when the operator
asked for gRPC, why it is not offered. Stdlib only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

from shim import options, wire
from shim.entry import config
from shim.identity import RUNTIME_NAME, SHIM_NAME, __version__

#: typeurl's name for the OCI runtime-spec features document (JSON value).
FEATURES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
_FEATURES_TIMEOUT = 10.0
#: Keys of RuntimeInfo.annotations (shim-level facts, not OCI annotations).
ANNOTATION_TASK_API = "io.containerd.lxcfs.v2/task-api"
ANNOTATION_RUNC = "io.containerd.lxcfs.v2/runc"
#: Why the task API differs from the one asked for (gRPC that containerd would drop).
ANNOTATION_TASK_API_NOTE = "io.containerd.lxcfs.v2/task-api-note"


def _features(runc: str) -> bytes | None:
    """`runc features` JSON; None when this runc cannot tell (as the Go shim tolerates)."""
    try:
        out = subprocess.run(
            [runc, "features"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_FEATURES_TIMEOUT,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as e:
        print(f"{SHIM_NAME} -info: {runc} features: {e}", file=sys.stderr)
        return None
    return out.stdout.strip() or None


def _any(type_url: str, value: bytes) -> bytes:
    return wire.bytes_field(1, type_url.encode()) + wire.bytes_field(2, value)


def runtime_info(raw_options: bytes, environ: Mapping[str, str]) -> bytes:
    """The encoded RuntimeInfo; raises ValueError (bad options or setting) or LookupError."""
    opts = options.decode(raw_options)
    task_api, note = config.resolve(opts, environ, bootstrap=True, containerd_version="2.x")
    name = str(opts.get("binary_name") or "runc")
    runc = shutil.which(name)
    if runc is None:
        raise LookupError(f'failed to look up the path of "{name}"')
    out = wire.bytes_field(1, RUNTIME_NAME.encode())
    out += wire.bytes_field(2, wire.bytes_field(1, __version__.encode()))
    if opts or raw_options:
        out += wire.bytes_field(3, raw_options)  # echoed, as the Go shim does
    features = _features(runc)
    if features is not None:
        out += wire.bytes_field(4, _any(FEATURES_TYPE, features))
    annotations = [(ANNOTATION_TASK_API, task_api), (ANNOTATION_RUNC, runc)]
    if note:
        annotations.append((ANNOTATION_TASK_API_NOTE, note))
    for key, value in annotations:
        entry = wire.bytes_field(1, key.encode()) + wire.bytes_field(2, value.encode())
        out += wire.bytes_field(5, entry)
    return out


def print_info() -> int:
    try:
        info = runtime_info(config.read_stdin(), os.environ)
    except (ValueError, LookupError) as e:
        print(f"{SHIM_NAME} -info: {e}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(info)
    sys.stdout.buffer.flush()
    return 0
