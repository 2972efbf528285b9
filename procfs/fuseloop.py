"""pyfuse3 on asyncio without trio and without re-registering /dev/fuse for every request.

pyfuse3's Cython main loop calls everything async through a module global named ``trio``
(``trio.lowlevel.wait_readable``, ``trio.Lock``, ``trio.open_nursery``, ...). Its own asyncio
shim (``pyfuse3.asyncio``) implements ``wait_readable`` with ``loop.add_reader`` +
``remove_reader`` around every single request (two epoll_ctl calls and selector bookkeeping,
then two loop turns), and ``import pyfuse3`` imports the real trio first (~90 ms, ~3.7 MB)
although asyncio mode never touches it.

:func:`import_pyfuse3` imports pyfuse3 with a throw-away ``trio`` placeholder (the real module is
never loaded; the placeholder leaves ``sys.modules`` again so a genuine ``import trio`` elsewhere
still works) and installs :data:`TRIO` -- this module's namespace -- as pyfuse3's ``trio``:

* ``wait_readable`` returns at once when a request is already queued (a zero-timeout poll, one
  syscall): a burst from concurrent readers is served back to back, yielding to the event loop
  every :data:`FAIR_EVERY` requests so the shim's other tasks are never starved;
* otherwise it waits on a future woken by a reader callback that stays registered for the whole
  session (disarmed only if the fd stays readable while nobody waits, which would make a
  level-triggered epoll spin).

Only one FUSE session exists per process (pyfuse3 keeps it in module globals), so the state is
module-level too.
"""

from __future__ import annotations

import asyncio
import logging
import select
import sys
import types
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: Requests served back to back without a loop turn, at most.
FAIR_EVERY = 16
#: Reader callbacks in a row with nobody waiting before the fd is taken out of epoll.
_IDLE_HITS = 3


class ClosedResourceError(Exception):
    """The fd is being closed (pyfuse3.terminate): the waiting worker must stop."""


class _FuseFd:
    """Readiness of the one /dev/fuse fd; see the module docstring."""

    def __init__(self) -> None:
        self.fd = -1
        self.loop: asyncio.AbstractEventLoop | None = None
        self.armed = False
        self.waiter: asyncio.Future[None] | None = None
        self.poller = select.poll()
        self.idle = 0
        self.streak = 0
        self.closing = False

    def bind(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        if fd != self.fd or loop is not self.loop:
            self.release()
            self.poller = select.poll()
            self.poller.register(fd, select.POLLIN)
            self.fd, self.loop = fd, loop
            self.closing = False

    def release(self) -> None:
        """Forget the fd (before pyfuse3 closes it): out of epoll, waiter failed."""
        self._disarm()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ClosedResourceError())
        self.waiter = None
        self.fd, self.loop = -1, None

    def _disarm(self) -> None:
        if self.armed and self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        self.armed = False

    def _on_readable(self) -> None:
        # asyncio queues selector callbacks behind the tasks woken in the previous turn, so this
        # event may predate a read the worker has just done: a worker woken for nothing would
        # block in read(2) and freeze the loop. Check again (one poll syscall).
        if not self.poller.poll(0):
            return
        w = self.waiter
        if w is not None and not w.done():
            self.idle = 0
            w.set_result(None)
            return
        # Level-triggered and nobody waiting: disarm if that lasts several turns (a worker busy
        # in a handler that awaits), so epoll does not spin.
        self.idle += 1
        if self.idle >= _IDLE_HITS:
            self._disarm()

    async def wait_readable(self, fd: int) -> None:
        if fd != self.fd or self.loop is None:
            self.bind(fd)
        if self.closing:
            raise ClosedResourceError()
        if self.poller.poll(0):
            self.streak += 1
            if self.streak < FAIR_EVERY:
                return
            self.streak = 0
            await asyncio.sleep(0)  # let the shim's other tasks run, then serve on
            if self.closing:
                raise ClosedResourceError()
            return
        self.streak = 0
        assert self.loop is not None
        waiter = self.loop.create_future()
        self.waiter = waiter
        if not self.armed:
            self.loop.add_reader(fd, self._on_readable)
            self.armed = True
        self.idle = 0
        try:
            await waiter
        finally:
            if self.waiter is waiter:
                self.waiter = None

    def notify_closing(self, fd: int) -> None:
        self.closing = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ClosedResourceError())


_fd = _FuseFd()


class _Nursery:
    """What pyfuse3.main() needs of a trio nursery: start worker tasks, wait for all of them.

    On the way out /dev/fuse leaves the event loop, before pyfuse3.close() closes it.
    """

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> _Nursery:
        return self

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None
    ) -> None:
        task = asyncio.create_task(func(*args), name=name)
        task.name = name  # type: ignore[attr-defined]  # pyfuse3 reads current_task().name
        self.tasks.add(task)

    async def __aexit__(self, *exc: object) -> None:
        try:
            while self.tasks:
                done, _ = await asyncio.wait(tuple(self.tasks))
                self.tasks -= done
                for t in done:  # a dead worker ends main(); the View treats that as lost
                    if not t.cancelled() and t.exception() is not None:
                        log.error("pyfuse3 worker %s died", t.get_name(), exc_info=t.exception())
        finally:
            _fd.release()


class _OneWorkerLock:
    """pyfuse3's read lock, for one worker (the view runs ``main(max_tasks=1)``): nobody else
    ever takes it, so it is a no-op instead of an asyncio.Lock per request."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _current_task() -> asyncio.Task[Any] | None:
    return asyncio.current_task()


def _current_trio_token() -> str:
    return "asyncio"


def _open_nursery() -> _Nursery:
    return _Nursery()


#: The object pyfuse3 sees as ``trio``.
TRIO = types.SimpleNamespace(
    Lock=_OneWorkerLock,
    ClosedResourceError=ClosedResourceError,
    open_nursery=_open_nursery,
    lowlevel=types.SimpleNamespace(
        wait_readable=_fd.wait_readable,
        notify_closing=_fd.notify_closing,
        current_task=_current_task,
        current_trio_token=_current_trio_token,
    ),
    from_thread=types.SimpleNamespace(),
)


def import_pyfuse3() -> types.ModuleType:
    """Import pyfuse3 without trio and switch it to this module's asyncio integration."""
    placeholder = None
    if "trio" not in sys.modules and "pyfuse3" not in sys.modules:
        placeholder = types.ModuleType("trio", "placeholder: pyfuse3 is run on asyncio")
        sys.modules["trio"] = placeholder
    try:
        import pyfuse3
    finally:
        if placeholder is not None and sys.modules.get("trio") is placeholder:
            del sys.modules["trio"]
    pyfuse3.trio = TRIO  # type: ignore[attr-defined]
    return pyfuse3
