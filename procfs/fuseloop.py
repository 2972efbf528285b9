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

pyfuse3 reads the request with a *blocking* read(2) right after ``wait_readable`` returns, and a
queued request can vanish before that read: the kernel withdraws a request that no daemon has
read yet when its caller gets a fatal signal (a reader SIGKILLed, a container killed). The read
would then block the whole event loop -- Task API included -- until some other container reads
a view file, possibly never. So ``wait_readable`` checks again right before it returns (a
worker woken by the reader callback may have slept through a Kill handler that withdrew the
request), and arms a one-shot timer (:data:`READ_BOUND`, SIGALRM with a no-op handler, so the
read fails with EINTR and pyfuse3 just waits again) against the remaining kernel-side window;
the next ``wait_readable`` disarms it.

While the shim's control path has work (an RPC in flight, an exit on its way out), the worker
yields after every request instead of every :data:`FAIR_EVERY`; it learns that through
:data:`urgent`, a hook this module owns and the shim points at its own state (shim/priority.py)
where it starts the view, so procfs never imports shim.

Only one FUSE session exists per process (pyfuse3 keeps it in module globals), so the state is
module-level too.
"""

from __future__ import annotations

import asyncio
import logging
import select
import signal
import sys
import threading
import types
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: Requests served back to back without a loop turn, at most.
FAIR_EVERY = 16
#: Reader callbacks in a row with nobody waiting before the fd is taken out of epoll.
_IDLE_HITS = 3
#: A read(2) of /dev/fuse that finds its request withdrawn is interrupted after this long.
READ_BOUND = 0.05


def _never() -> bool:
    return False


#: Control work is pending: yield the loop after each request. The shim sets it where it starts
#: the view; left alone (tests, benches of the view alone) requests are served back to back.
urgent: Callable[[], bool] = _never


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
        self.timer = False  # READ_BOUND can be armed (SIGALRM handled, main thread)
        self.timer_armed = False

    def _setup_timer(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.timer = False  # signals reach the main thread only: no bound off it
            return
        if signal.getsignal(signal.SIGALRM) == signal.SIG_DFL:
            # No SA_RESTART (Python's default): the blocked read returns EINTR.
            signal.signal(signal.SIGALRM, _interrupt_read)
        # SIGALRM owned by someone else (a test runner's timeout): no bound, theirs stays.
        self.timer = signal.getsignal(signal.SIGALRM) is _interrupt_read

    def _arm_timer(self) -> None:
        if self.timer:
            signal.setitimer(signal.ITIMER_REAL, READ_BOUND)
            self.timer_armed = True

    def _disarm_timer(self) -> None:
        if self.timer_armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.timer_armed = False

    def bind(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        if fd != self.fd or loop is not self.loop:
            self.release()
            self.poller = select.poll()
            self.poller.register(fd, select.POLLIN)
            self.fd, self.loop = fd, loop
            self.closing = False
            self._setup_timer()

    def release(self) -> None:
        """Forget the fd (before pyfuse3 closes it): out of epoll, waiter failed."""
        self._disarm_timer()
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
        """Return when a request is queued, right before pyfuse3's blocking read(2)."""
        self._disarm_timer()  # the previous read returned
        if fd != self.fd or self.loop is None:
            self.bind(fd)
        while True:
            if self.closing:
                raise ClosedResourceError()
            if self.poller.poll(0):
                self.streak += 1
                if self.streak < FAIR_EVERY and not urgent():
                    self._arm_timer()
                    return
                self.streak = 0
                await asyncio.sleep(0)  # let the shim's other tasks run, then serve on
                if self.poller.poll(0) and not self.closing:  # still there after that turn
                    self._arm_timer()
                    return
                continue
            self.streak = 0
            await self._wait_callback(fd)
            if self.poller.poll(0) and not self.closing:  # not withdrawn meanwhile
                self._arm_timer()
                return

    async def _wait_callback(self, fd: int) -> None:
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


def _interrupt_read(signum: int, frame: object) -> None:
    """SIGALRM of READ_BOUND: nothing to do, the interrupted read(2) is the point."""


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
