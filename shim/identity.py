"""Names and locations shared by `start`, `delete` and the serving process.

Stdlib only: `start` and `delete` run once per container on containerd's critical path,
so everything they import must be cheap.
"""

from __future__ import annotations

import hashlib
import os
import socket

__version__ = "0.1.0"
RUNTIME_NAME = "io.containerd.lxcfs.v2"
SHIM_NAME = "containerd-shim-lxcfs-v2"

#: The Go shims put their sockets here whatever containerd's state dir is; so do we.
SOCKET_DIR = "/run/containerd/s"
#: Per-shim state (the FUSE mountpoint lives below it).
STATE_DIR = "/run/containerd-shim-lxcfs"
#: Default runc state root; the namespace is appended (as containerd-shim-runc-v2 does).
RUNC_ROOT = "/run/containerd/runc"

#: Annotations that put several containers into one shim (a Kubernetes pod), first match wins.
GROUP_ANNOTATIONS = (
    "io.containerd.lxcfs.v2.group",
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
)


def group_id(task_id: str, annotations: dict[str, str]) -> str:
    """The id of the shim process that should host `task_id` (its pod, or itself)."""
    for key in GROUP_ANNOTATIONS:
        value = annotations.get(key)
        if value:
            return value
    return task_id


def shim_hash(address: str, namespace: str, group: str) -> str:
    """sha256 of `<containerd address>/<namespace>/<group>`, as containerd's shims name sockets."""
    return hashlib.sha256(os.path.join(address, namespace, group).encode()).hexdigest()


def socket_path(address: str, namespace: str, group: str) -> str:
    return os.path.join(SOCKET_DIR, shim_hash(address, namespace, group))


def state_dir(address: str, namespace: str, group: str) -> str:
    return os.path.join(STATE_DIR, shim_hash(address, namespace, group))


def shim_alive(path: str, timeout: float = 0.1) -> bool:
    """Whether a shim answers on `path`: a live one accepts a connect at once."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
