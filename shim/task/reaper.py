"""One reaper for every child of the shim.

The shim is a child subreaper: container inits and `runc exec --detach` processes are
re-parented to it, and its own `runc` invocations are its children too. A single
`waitpid(-1)` loop on SIGCHLD collects them all and hands each exit to whoever watches that
pid, so a runc call never has its status stolen by the container reaper (or the reverse).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass

import anyio

from shim import priority

log = logging.getLogger("shim.reaper")

_PR_SET_CHILD_SUBREAPER = 36
#: Exits nobody has claimed yet (a container that died before its pid file was read).
_UNCLAIMED_LIMIT = 1024


@dataclass(frozen=True)
class Exit:
    pid: int
    status: int  #: exit code, or 128+signal
    at: float  #: time.time() when the shim collected it


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def exit_status(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


class Watch:
    """The future exit of one pid."""

    __slots__ = ("event", "exit")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.exit: Exit | None = None

    async def wait(self) -> Exit:
        await self.event.wait()
        assert self.exit is not None
        return self.exit


class Reaper:
    """Collects exits on SIGCHLD and wakes the watcher of each pid."""

    def __init__(self) -> None:
        self._watches: dict[int, Watch] = {}
        self._unclaimed: OrderedDict[int, Exit] = OrderedDict()

    def watch(self, pid: int) -> Watch:
        """Start watching `pid`; call before the process can be reaped, or right after spawn."""
        watch = self._watches.get(pid)
        if watch is None:
            watch = self._watches[pid] = Watch()
            early = self._unclaimed.pop(pid, None)
            if early is not None:
                self._resolve(watch, early)
        return watch

    def forget(self, pid: int) -> None:
        self._watches.pop(pid, None)

    @staticmethod
    def _resolve(watch: Watch, ex: Exit) -> None:
        watch.exit = ex
        watch.event.set()

    def reap(self) -> None:
        """Collect every exited child (SIGCHLDs coalesce, so loop until none is left)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ex = Exit(pid, exit_status(status), time.time())
            priority.boost()  # its TaskExit and Wait go ahead of the FUSE view's requests
            watch = self._watches.pop(pid, None)
            if watch is not None:
                self._resolve(watch, ex)
            else:
                self._unclaimed[pid] = ex
                while len(self._unclaimed) > _UNCLAIMED_LIMIT:
                    self._unclaimed.popitem(last=False)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
            task_status.started()
            self.reap()
            async for _ in signals:
                self.reap()
