"""Mount view files runc will not bind (/proc/vmstat, /proc/pressure/*) into a created
container, between ``runc create`` and ``runc start``.

runc only lets a bind cover a short list of /proc files, so these are attached by the shim into
the init's mount namespace once it exists (the init waits in ``runc init`` until start, so
nothing in the container has run yet). Same steps as the remount helper (procfs/rebind.py):
clone each view file with ``open_tree`` in the host namespace, ``setns`` into the container's,
``move_mount`` the clones (ro, nosuid, nodev, noexec). ``setns`` needs a single-threaded
process, and the FUSE lookups of the clone are answered by the shim's own event loop, so the
work runs in a forked child (about a millisecond, where the helper's interpreter start is
~100 ms on every create).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from procfs import mounts
from procfs.container import Container
from procfs.readers import pressure_path

log = logging.getLogger(__name__)

TIMEOUT = 10.0


def late_files(c: Container, late: frozenset[str]) -> dict[str, str]:
    """The container's view files among ``late`` (target → source). Pressure files only
    where the container has a cgroup2 directory to read them from (else it keeps the
    host's file, unmounted, rather than a view that would show the host's anyway)."""
    out = {}
    for target, source in c.files.items():
        if target not in late:
            continue
        if target.startswith("/proc/pressure/") and (
            c.ref is None or pressure_path(c.ref, target.rsplit("/", 1)[1]) is None
        ):
            continue
        out[target] = source
    return out


def bind_here(pid: int, pairs: list[tuple[str, str]]) -> list[str]:
    """In the child: (source, target) pairs attached in ``pid``'s mount namespace; targets
    the container does not have (no /proc/pressure without PSI) are skipped."""
    trees = [(mounts.open_tree_clone(src), target) for src, target in pairs]
    for fd, _ in trees:
        mounts.set_read_only(fd)
    ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    mounts.setns_mnt(ns)
    done = []
    for fd, target in trees:
        if os.path.isfile(target):
            mounts.attach(fd, target)
            done.append(target)
    return done


def _child(pid: int, pairs: list[tuple[str, str]], w: int) -> None:
    status = 1
    try:
        signal.set_wakeup_fd(-1)  # the parent's event loop owns that fd
        try:
            msg = "ok " + " ".join(bind_here(pid, pairs))
            status = 0
        except OSError as e:
            msg = f"error {e}"
        os.write(w, msg.encode() + b"\n")
    finally:
        os._exit(status)


async def bind(
    pid: int, files: Mapping[str, str], watch: Callable[[int], Any] | None = None
) -> list[str]:
    """Attach ``files`` (container target → host source) in ``pid``'s mount namespace;
    the targets mounted. OSError with the child's reason on failure.

    ``watch`` (the shim's ``Reaper.watch``) claims the child's exit, so a reaper collecting
    every child keeps no stray exit for a pid that may come back; without it, waitpid."""
    if not files:
        return []
    pairs = [(source, target) for target, source in files.items()]
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(r)
        _child(pid, pairs, w)
    watcher = watch(child) if watch is not None else None  # before the reaper can run
    os.close(w)
    reply = b""
    try:
        with anyio.fail_after(TIMEOUT):
            while not reply.endswith(b"\n"):
                await anyio.wait_readable(r)
                chunk = os.read(r, 4096)
                if not chunk:
                    break
                reply += chunk
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        raise
    finally:
        os.close(r)
        if watcher is not None:
            with anyio.move_on_after(TIMEOUT), anyio.CancelScope(shield=True):
                await watcher.wait()
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)
    text = reply.decode(errors="replace").strip()
    if not text.startswith("ok"):
        raise OSError(text or "late mount helper died")
    return text[2:].split()
