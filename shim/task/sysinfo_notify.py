"""sysinfo(2) answered by the shim: the listener runc hands seccomp notify fds to, and the
loop that serves each fd in the shim's event loop.

runc (``linux.seccomp.listenerPath``) connects once per process it sets a filter up for --
the init at ``runc create``, and every ``runc exec`` (each gets its own filter) -- and sends
the container state JSON with the notify fd (SCM_RIGHTS). Children inherit their parent's
filter, so those fds cover every process in the container. Each fd is served until no process
uses its filter any more (POLLHUP) or the container is deleted. If the shim goes away, the
kernel fails pending and later sysinfo calls with ENOSYS: callers never hang.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field

import anyio
import anyio.abc

from procfs.container import Container
from procfs.sysinfo import produce_sysinfo
from procfs.view import SHARE_WINDOW, View
from shim.identity import SYSINFO_SOCKET
from shim.task import seccomp_notify

log = logging.getLogger("shim.sysinfo")

#: runc writes the state and fd at once, then closes; a peer slower than this is dropped.
_HANDSHAKE_TIMEOUT = 5.0
_MAX_STATE = 1 << 20


@dataclass
class _Filters:
    """The notify fds of one container (its init's and one per exec), each with its loop."""

    scopes: list[anyio.CancelScope] = field(default_factory=list)


class SysinfoNotifier:
    def __init__(self, state_dir: str, view: View) -> None:
        self.path = os.path.join(state_dir, SYSINFO_SOCKET)
        self._view = view
        self._containers: dict[str, _Filters] = {}
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        #: counters for logs, tests and the bench
        self.answered = 0
        self.fds_received = 0

    # -- the create/delete hooks (TaskService) ---------------------------------------------

    def listener(self) -> str | None:
        """The socket a container's runc hands its notify fds to, or None when this shim
        cannot answer sysinfo(2) (not serving yet, or a kernel without seccomp notify)."""
        if self._tg is None or not seccomp_notify.supported():
            return None
        return self.path

    def register(self, container_id: str) -> None:
        """Create put our notify rule into the container's spec: expect its fds."""
        self._containers[container_id] = _Filters()

    def forget(self, container_id: str) -> None:
        """The container is gone: stop serving (and close) its fds."""
        filters = self._containers.pop(container_id, None)
        self._cache.pop(container_id, None)
        for scope in filters.scopes if filters else ():
            scope.cancel()

    # -- serving ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.makedirs(os.path.dirname(self.path), mode=0o711, exist_ok=True)
        listener = await anyio.create_unix_listener(self.path)
        os.chmod(self.path, 0o600)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await listener.serve(self._handshake, task_group=tg)
        finally:
            self._tg = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # first: awaiting in a cancelled scope raises at once
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _handshake(self, stream: anyio.abc.SocketStream) -> None:
        """One connection from runc: ContainerProcessState JSON + the notify fd."""
        fds: list[int] = []
        try:
            async with stream:
                with anyio.fail_after(_HANDSHAKE_TIMEOUT):
                    data, fds = await stream.receive_fds(65536, 4)
                    chunks = [data]
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while sum(map(len, chunks)) < _MAX_STATE:
                            chunks.append(await stream.receive())
            state = json.loads(b"".join(chunks))
            container_id = state["state"]["id"]
            pid = state.get("pid", 0)
            fd = fds.pop(0)
        except Exception as e:  # a bad peer must never take the shim down
            log.warning("seccomp listener: bad handshake: %r", e)
            for fd in fds:
                os.close(fd)
            return
        for extra in fds:
            os.close(extra)
        filters = self._containers.get(container_id)
        if filters is None or self._tg is None:
            log.warning("seccomp listener: fd for unknown container %s", container_id)
            os.close(fd)
            return
        self.fds_received += 1
        scope = anyio.CancelScope()
        filters.scopes.append(scope)
        log.debug("serving sysinfo of %s (pid %s, fd %d)", container_id, pid, fd)
        self._tg.start_soon(self._serve_fd, container_id, fd, scope)

    async def _serve_fd(self, container_id: str, fd: int, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                while True:
                    await anyio.wait_readable(fd)
                    if seccomp_notify.hung_up(fd):
                        break
                    n = seccomp_notify.receive(fd)
                    if n is not None:
                        self._answer(container_id, fd, n)
        except Exception:  # its sysinfo fails (ENOSYS), not the shim
            log.exception("sysinfo of %s: serving its notify fd failed", container_id)
        finally:
            filters = self._containers.get(container_id)
            if filters is not None and scope in filters.scopes:
                filters.scopes.remove(scope)
            os.close(fd)

    def _rendering(self, container_id: str, c: Container) -> bytes:
        """The struct for ``c``, shared by calls within the view's freshness window (a
        program polling sysinfo costs one rendering per window, as concurrent readers of
        a /proc file do)."""
        now = time.monotonic()
        cached = self._cache.get(container_id)
        if cached is not None and now - cached[0] < SHARE_WINDOW:
            return cached[1]
        data = produce_sysinfo(c).pack()
        self._cache[container_id] = (now, data)
        return data

    def _answer(self, container_id: str, fd: int, n: seccomp_notify.Notification) -> None:
        c = self._view.container(container_id)
        if c is None or not n.native_sysinfo:
            seccomp_notify.let_kernel_answer(fd, n)
            return
        try:
            data = self._rendering(container_id, c)
        except (OSError, ValueError, LookupError) as e:
            log.info("sysinfo of %s: %s; the kernel answers", container_id, e)
            seccomp_notify.let_kernel_answer(fd, n)
            return
        outcome = seccomp_notify.answer_with_bytes(fd, n, data)
        if outcome == "answered":
            self.answered += 1
        log.debug("sysinfo of %s for pid %d: %s", container_id, n.pid, outcome)
