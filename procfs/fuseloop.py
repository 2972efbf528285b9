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
* otherwise it polls for up to :data:`SPIN` (a reader's next request comes that soon), and
  only then waits on a future woken by a reader callback that stays registered for the whole
  session (disarmed only if the fd stays readable while nobody waits, which would make a
  level-triggered epoll spin).

pyfuse3 reads the request with a *blocking* read(2) right after ``wait_readable`` returns, and a
queued request can vanish before that read: the kernel withdraws a request that no daemon has
read yet when its caller gets a fatal signal (a reader SIGKILLed, a container killed). The read
would then block the whole event loop -- Task API included -- until some other container reads
a view file, possibly never. So ``wait_readable`` checks again right before it returns (a
worker woken by the reader callback may have slept through a Kill handler that withdrew the
request), and the remaining kernel-side window is closed by a *periodic* SIGALRM
(:data:`READ_BOUND`, ITIMER_REAL, no SA_RESTART) whose handler does nothing: a read blocked on
a withdrawn request fails with EINTR and pyfuse3 just waits again. The timer keeps ticking while
requests are being served and is stopped by the tick that finds the worker back in
``wait_readable``, i.e. not between a poll and its read: a busy session costs no syscall per
request (a one-shot timer armed and disarmed around every read was two ``setitimer`` per
request), an idle one no wake-up, and a tick that lands before the read (the shim preempted on
a loaded node) is followed by the next one -- a read is never left without a bound.

O_NONBLOCK on /dev/fuse is no alternative: libfuse returns -EAGAIN from
``fuse_session_receive_buf`` and pyfuse3's ``_session_loop`` retries only on EINTR; any other
error raises out of the worker, ending ``main()``.

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
import os
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: Requests served back to back without a loop turn, at most.
FAIR_EVERY = 16
#: Reader callbacks in a row with nobody waiting before the fd is taken out of epoll.
_IDLE_HITS = 3
#: Period of the SIGALRM tick: a read(2) of /dev/fuse that finds its request withdrawn is
#: interrupted after at most this long.
READ_BOUND = 0.05
#: How long the worker polls for the next request before it sleeps in the event loop. A reader
#: sends its next request (READ after OPEN, the EOF READ, RELEASE) a few microseconds after our
#: reply; catching it here saves the loop turn and the wake-up of a sleeping shim
#: (python -m bench.view_rtt, one run: 145 -> 84 us of shim CPU per open+read+close, with the
#: view's one-tick size lifetime on both sides). Only with a second CPU to poll on and no
#: control work pending.
SPIN = 50e-6


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
        self.timer = False  # READ_BOUND can tick (SIGALRM handled, main thread)
        self.ticking = False  # the periodic timer runs
        self.reading = False  # between wait_readable's return and the next wait_readable
        self.spin = 0.0  # SPIN when the reader can run on another CPU meanwhile, else 0

    def _setup_timer(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.timer = False  # signals reach the main thread only: no bound off it
            return
        global _ticker
        if signal.getsignal(signal.SIGALRM) == signal.SIG_DFL:
            # No SA_RESTART (Python's default): the blocked read returns EINTR.
            signal.signal(signal.SIGALRM, _interrupt_read)
        # SIGALRM owned by someone else (a test runner's timeout): no bound, theirs stays.
        self.timer = signal.getsignal(signal.SIGALRM) is _interrupt_read
        if self.timer:
            _ticker = self

    def _about_to_read(self) -> None:
        """wait_readable returns: pyfuse3's read(2) follows; make sure the tick runs."""
        self.reading = True  # first: a tick in between must not stop the timer
        if self.timer and not self.ticking:
            signal.setitimer(signal.ITIMER_REAL, READ_BOUND, READ_BOUND)
            self.ticking = True

    def on_tick(self) -> None:
        """SIGALRM (Python-level, main thread, between bytecodes: never inside the read).

        The signal itself has interrupted a blocked read. Stop the timer only when the worker is
        back in wait_readable: the next read is preceded by _about_to_read, which restarts it.
        """
        if not self.reading:
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self.ticking:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.ticking = False

    def bind(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        if fd != self.fd or loop is not self.loop:
            self.release()
            self.poller = select.poll()
            self.poller.register(fd, select.POLLIN)
            self.fd, self.loop = fd, loop
            self.closing = False
            self.spin = SPIN if len(os.sched_getaffinity(0)) > 1 else 0.0
            self._setup_timer()

    def release(self) -> None:
        """Forget the fd (before pyfuse3 closes it): out of epoll, waiter failed, no tick."""
        self.reading = False
        self._stop_timer()
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
        self.reading = False  # the previous read returned
        if fd != self.fd or self.loop is None:
            self.bind(fd)
        while True:
            if self.closing:
                raise ClosedResourceError()
            # queued, or coming within the spin: either way one more request in a row
            if self.poller.poll(0) or (self.spin and not urgent() and self._spin()):
                self.streak += 1
                if self.streak < FAIR_EVERY and not urgent():
                    self._about_to_read()
                    return
                self.streak = 0
                await asyncio.sleep(0)  # let the shim's other tasks run, then serve on
                if self.poller.poll(0) and not self.closing:  # still there after that turn
                    self._about_to_read()
                    return
                continue
            self.streak = 0
            await self._wait_callback(fd)
            if self.poller.poll(0) and not self.closing:  # not withdrawn meanwhile
                self._about_to_read()
                return

    def _spin(self) -> bool:
        """Poll for up to ``self.spin`` seconds (blocking the loop that long at most, so nothing
        on it -- pyfuse3.terminate included -- can change ``closing`` meanwhile)."""
        poll = self.poller.poll
        deadline = time.perf_counter() + self.spin
        while time.perf_counter() < deadline:
            if poll(0):
                return True
        return False

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


#: The _FuseFd whose timer SIGALRM ticks for (the one session; tests make their own).
_ticker: _FuseFd | None = None


def _interrupt_read(signum: int, frame: object) -> None:
    """SIGALRM of READ_BOUND: the interrupted read(2) is the point; stop ticking when idle."""
    if _ticker is not None:
        _ticker.on_tick()


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
