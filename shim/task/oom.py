"""OOM watching: call back when the kernel OOM-kills inside a container's memory cgroup.

As containerd-shim-runc-v2 does (shim-contract.md §10):
* cgroup v1: an eventfd registered for `memory.oom_control` via `cgroup.event_control`; the
  kernel signals it on every OOM in the cgroup, and once more when the cgroup is removed;
* cgroup v2: inotify on `memory.events`; each increase of `oom_kill` is one OOM.
Both are plain fds awaited with `anyio.wait_readable`, inside the caller's cancel scope.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Callable
from pathlib import Path

import anyio

log = logging.getLogger("shim.oom")

_IN_MODIFY = 0x2
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC


async def watch_v1(cgroup: Path, on_oom: Callable[[], None]) -> None:
    """Until the cgroup goes away (or cancellation), call `on_oom` on each OOM event."""
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        ocfd = os.open(cgroup / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(cgroup / "cgroup.event_control", "w") as f:
                f.write(f"{efd} {ocfd}")
        finally:
            os.close(ocfd)
        while True:
            await anyio.wait_readable(efd)
            try:
                os.eventfd_read(efd)
            except BlockingIOError:
                continue
            # the kernel also signals the eventfd when the cgroup is removed
            if not (cgroup / "cgroup.procs").exists():
                return
            on_oom()
    finally:
        os.close(efd)


def _oom_kills(path: Path) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return 0


async def watch_v2(cgroup: Path, on_oom: Callable[[], None]) -> None:
    """inotify on memory.events: one callback per increase of its `oom_kill` counter."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    try:
        events = cgroup / "memory.events"
        if libc.inotify_add_watch(fd, bytes(events), _IN_MODIFY) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {events}")
        seen = _oom_kills(events)
        while True:
            await anyio.wait_readable(fd)
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 4096)
            if not events.exists():
                return
            count = _oom_kills(events)
            for _ in range(max(0, count - seen)):
                on_oom()
            seen = max(seen, count)
    finally:
        os.close(fd)


async def watch(cgroup: Path, version: int, on_oom: Callable[[], None]) -> None:
    """Watch quietly: a cgroup that cannot be watched is logged, never an error for the task."""
    try:
        if version == 1:
            await watch_v1(cgroup, on_oom)
        else:
            await watch_v2(cgroup, on_oom)
    except OSError as e:
        log.warning("cannot watch %s for OOM: %s", cgroup, e)
