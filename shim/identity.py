"""Names and locations shared by `start`, `delete` and the serving process.

Stdlib only: `start` and `delete` run once per container on containerd's critical path,
so everything they import must be cheap: the C modules `_socket` and `_sha256` stand in for
`socket` and `hashlib` (which import enum, selectors and OpenSSL: ~15 ms of every run).
"""

from __future__ import annotations

import _socket
import os
import sys

try:
    from _sha256 import sha256
except ImportError:  # Python >= 3.12 renamed it
    from hashlib import sha256

__version__ = "0.1.0"
RUNTIME_NAME = "io.containerd.lxcfs.v2"
SHIM_NAME = "containerd-shim-lxcfs-v2"

#: The Go shims put their sockets here whatever containerd's state dir is; so do we.
SOCKET_DIR = "/run/containerd/s"
#: Per-shim state (the FUSE mountpoint lives below it).
STATE_DIR = "/run/containerd-shim-lxcfs"
#: Where runc hands over seccomp notify fds (shim/task/sysinfo_notify.py), in each serving
#: process's own dir (`instance_dir`): /run/containerd-shim-lxcfs/<64 hex>/<pid, at most 7
#: digits>/sysinfo is at most 107 bytes, within AF_UNIX's 108.
SYSINFO_SOCKET = "sysinfo"
#: Default runc state root; the namespace is appended (as containerd-shim-runc-v2 does).
RUNC_ROOT = "/run/containerd/runc"

#: Annotations that put several containers into one shim (a Kubernetes pod), first match wins.
GROUP_ANNOTATIONS = (
    "io.containerd.lxcfs.v2.group",
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
)


def group_annotations(bundle: str) -> dict[str, str]:
    """The bundle's spec annotations, when one of them can name a group (else `{}`).

    Parsing config.json means importing json (~15 ms of every `start`); containers outside
    a pod (ctr, nerdctl) carry no group annotation, so look for the keys first.
    """
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    if not any(key.encode() in raw for key in GROUP_ANNOTATIONS):
        return {}
    import json

    try:
        annotations = json.loads(raw).get("annotations") or {}
    except (ValueError, AttributeError):
        return {}
    return annotations if isinstance(annotations, dict) else {}


def group_id(task_id: str, annotations: dict[str, str]) -> str:
    """The id of the shim process that should host `task_id` (its pod, or itself)."""
    for key in GROUP_ANNOTATIONS:
        value = annotations.get(key)
        if value:
            return value
    return task_id


def shim_hash(address: str, namespace: str, group: str) -> str:
    """sha256 of `<containerd address>/<namespace>/<group>`, as containerd's shims name sockets."""
    return sha256(os.path.join(address, namespace, group).encode()).hexdigest()


def socket_path(address: str, namespace: str, group: str, directory: str = "") -> str:
    """The group's shim socket: in `directory` when containerd 2.3+ names one (its
    `socket_dir`, e.g. for a rootless containerd), else the Go shims' fixed directory."""
    return os.path.join(directory or SOCKET_DIR, shim_hash(address, namespace, group))


def state_dir(address: str, namespace: str, group: str) -> str:
    return os.path.join(STATE_DIR, shim_hash(address, namespace, group))


def instance_dir(state: str, pid: int) -> str:
    """One serving process's own directory below its group's state dir (its FUSE view).

    Per process, not per group: when an id is reused at once, the old shim may still be
    unmounting its view while the new one mounts; one shared mountpoint would stack the two
    mounts and the old shim's unmount would take the new one's.
    """
    return os.path.join(state, str(pid))


def instance_alive(pid: int) -> bool:
    """Whether `pid` may still be a serving process: a live process (not a zombie) whose
    command line names a shim. A pid reused by anything else counts as dead."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"shim" in f.read()  # containerd-shim-lxcfs-v2, or `python -m shim`
    except OSError:
        return False


class SocketLock:
    """Node-wide lock over shim sockets, group state dirs and task-api records.

    `start` (probe, bind, record), a shutting-down shim (remove *its own* socket and record)
    and `delete` (remove a dead shim's) each check-then-act on the same paths: under this
    flock none of them can remove what another just made. Held for microseconds (a probe
    connect at most); released by the kernel if the holder dies.
    """

    def __enter__(self) -> SocketLock:
        import fcntl  # a small C module

        os.makedirs(STATE_DIR, mode=0o711, exist_ok=True)
        self._fd = os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # releases the flock


def file_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of `path`, None if it is gone: tells our socket file from a successor's."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def shim_alive(path: str, timeout: float = 0.1) -> bool:
    """Whether a shim answers on `path`: a live one accepts a connect at once."""
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def code_fingerprint() -> str:
    """Which code a zygote would fork: the launcher, the interpreter and every module of ours.

    Stat-only (about a hundred files): an edited or upgraded installation gets a new zygote
    instead of children of the old image, and a second launcher (another install, a profiling
    copy) gets its own.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = sha256(f"{os.path.abspath(sys.argv[0])}\0{sys.executable}".encode())
    for package in ("shim", "procfs", "protos"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, name))
                    digest.update(f"{dirpath}/{name}:{st.st_mtime_ns}:{st.st_size}".encode())
    return digest.hexdigest()[:16]


#: What a forked shim inherits from the zygote instead of from containerd: a zygote serves
#: only `start`s that share all of it (mount namespace: where the view is mounted and the
#: paths resolve; cgroups: what the shim is charged to; user/pid namespaces: who it is).
_NAMESPACES = ("mnt", "user", "pid", "net", "ipc", "uts", "cgroup")


def process_context(pid: int | str = "self") -> str:
    """A digest of `pid`'s namespaces, cgroups, root and LSM label: two processes with the
    same digest would give a child the same surroundings, forked or exec'd."""
    parts = []
    for ns in _NAMESPACES:
        try:
            parts.append(os.readlink(f"/proc/{pid}/ns/{ns}"))
        except OSError:
            parts.append("")
    for name in ("cgroup", "attr/current"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                parts.append(f.read().decode(errors="replace"))
        except OSError:
            parts.append("")
    try:
        parts.append(os.readlink(f"/proc/{pid}/root"))
    except OSError:
        parts.append("")
    return sha256("\0".join(parts).encode()).hexdigest()[:16]


ZYGOTE_PREFIX = "zygote-"


def zygote_socket() -> str:
    """The fork server for this code *and* this caller's context (see `process_context`)."""
    return os.path.join(STATE_DIR, f"{ZYGOTE_PREFIX}{code_fingerprint()}-{process_context()}.sock")


def quietly(call: object, *args: object) -> None:
    """`call(*args)`, ignoring OSError: best-effort cleanup without importing contextlib."""
    try:  # noqa: SIM105 - contextlib costs ~5 ms of every start/delete
        call(*args)  # type: ignore[operator]
    except OSError:
        pass
