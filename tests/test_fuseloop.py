"""procfs.fuseloop: a withdrawn FUSE request never leaves the event loop blocked in read(2).

The kernel drops a queued request whose caller got SIGKILL before the daemon read it. pyfuse3
reads with a blocking read(2) as soon as `wait_readable` returns, so returning for a request
that is gone froze the shim's whole loop (Task API included) until another container read a
view file: seen in bench/starvation.py as a Kill that never answered. A pipe stands in for
/dev/fuse here: a byte queued is a request, draining it is the withdrawal.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import threading
import time

import pytest

from procfs import fuseloop
from shim import priority

libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    fd = fuseloop._FuseFd()
    old = signal.getsignal(signal.SIGALRM)
    yield fd, r, w
    fd.release()
    signal.signal(signal.SIGALRM, old)
    os.close(r)
    os.close(w)


def test_withdrawn_while_the_worker_was_waking(pipe) -> None:
    """Woken by the reader callback, the request is withdrawn before the worker runs: wait on."""
    fd, r, w = pipe

    async def main() -> list[str]:
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        on_readable = fd._on_readable

        withdrawn: list[bool] = []

        def kill_handler_first() -> None:
            # a task queued ahead of the worker's wake-up withdraws the request (a Kill)
            if not withdrawn:
                withdrawn.append(True)
                loop.call_soon(os.read, r, 1)
            on_readable()

        fd._on_readable = kill_handler_first  # type: ignore[method-assign]
        worker = asyncio.create_task(fd.wait_readable(r))
        await asyncio.sleep(0.01)  # the worker waits on the reader callback
        os.write(w, b"x")
        await asyncio.sleep(0.05)
        seen.append("returned" if worker.done() else "waiting")
        os.write(w, b"y")  # a real request: now it returns
        await asyncio.wait_for(worker, 2)
        seen.append("returned")
        return seen

    assert asyncio.run(main()) == ["waiting", "returned"]


def test_withdrawn_during_the_fair_turn(pipe) -> None:
    """Queued, the worker yields a turn (end of a streak), the request goes meanwhile."""
    fd, r, w = pipe

    async def main() -> bool:
        os.write(w, b"x")
        fd.streak = fuseloop.FAIR_EVERY - 1  # this request ends a streak: the worker yields
        worker = asyncio.create_task(fd.wait_readable(r))
        await asyncio.sleep(0)  # the worker polls, finds it, yields a turn ...
        os.read(r, 1)  # ... in which the request is withdrawn
        await asyncio.sleep(0.05)
        waiting = not worker.done()
        os.write(w, b"y")
        await asyncio.wait_for(worker, 2)
        return waiting

    assert asyncio.run(main())


def test_read_after_a_late_withdrawal_is_interrupted(pipe) -> None:
    """The kernel-side window (poll said ready, read finds nothing) ends in EINTR, not a hang."""
    fd, r, w = pipe

    async def main() -> tuple[int, int, float]:
        os.write(w, b"x")
        await fd.wait_readable(r)
        os.read(r, 1)  # withdrawn between the poll and pyfuse3's read
        buf = ctypes.create_string_buffer(16)
        t = time.monotonic()
        n = libc.read(r, buf, 16)  # what libfuse does: C read(2), no retry on EINTR
        return n, ctypes.get_errno(), time.monotonic() - t

    n, err, took = asyncio.run(main())
    assert (n, err) == (-1, errno.EINTR)
    assert took < 5  # bounded (READ_BOUND); the figure is not a timing assert


def test_read_after_a_tick_before_it_is_still_interrupted(pipe) -> None:
    """The shim preempted between the poll and the read for longer than READ_BOUND (a loaded
    node): the tick that came too early is followed by another, the read still ends in EINTR.
    A one-shot timer would have fired in the gap and left the read unbounded."""
    fd, r, w = pipe
    rescue = threading.Timer(3, os.write, (w, b"r"))  # a failing run ends, with data, not a hang

    async def main() -> tuple[int, int]:
        os.write(w, b"x")
        await fd.wait_readable(r)
        time.sleep(3 * fuseloop.READ_BOUND)  # ticks land here (Python retries the sleep)
        os.read(r, 1)  # withdrawn
        buf = ctypes.create_string_buffer(16)
        rescue.start()
        n = libc.read(r, buf, 16)
        return n, ctypes.get_errno()

    try:
        assert asyncio.run(main()) == (-1, errno.EINTR)
    finally:
        rescue.cancel()


def test_the_tick_stops_when_the_worker_waits(pipe) -> None:
    """Idle costs nothing: the first tick that finds the worker in wait_readable stops the
    timer, the next request starts it again; a busy worker keeps it running, one setitimer."""
    fd, r, w = pipe

    async def main() -> list[bool]:
        seen = []
        os.write(w, b"xy")
        await fd.wait_readable(r)
        os.read(r, 1)
        await fd.wait_readable(r)  # back to back: the timer runs on
        os.read(r, 1)
        seen.append(fd.ticking)
        worker = asyncio.create_task(fd.wait_readable(r))
        await asyncio.sleep(3 * fuseloop.READ_BOUND)  # idle: a tick stops it
        seen.append(fd.ticking)
        os.write(w, b"z")
        await asyncio.wait_for(worker, 2)
        seen.append(fd.ticking)
        return seen

    assert asyncio.run(main()) == [True, False, True]


def test_control_work_makes_the_worker_yield_after_each_request(pipe, monkeypatch) -> None:
    """shim.priority through the fuseloop.urgent hook (as the daemon wires it): requests back
    to back normally, one per loop turn while an RPC runs."""
    fd, r, w = pipe
    monkeypatch.setattr(fuseloop, "urgent", priority.urgent)

    async def main() -> tuple[bool, bool]:
        os.write(w, b"xy")
        worker = asyncio.create_task(fd.wait_readable(r))
        await asyncio.sleep(0)
        back_to_back = worker.done()
        os.read(r, 1)
        with priority.control():
            worker = asyncio.create_task(fd.wait_readable(r))
            await asyncio.sleep(0)
            yielded = not worker.done()
            await asyncio.wait_for(worker, 2)
        return back_to_back, yielded

    assert asyncio.run(main()) == (True, True)
    assert not priority.urgent()
    priority.boost(60)  # an exit on its way out
    assert priority.urgent()
    priority._until = 0.0


def _spin_run(fd, r, w, *, urgent: bool) -> list[str]:
    """Wait for a request written by another thread while the worker has nothing queued;
    which way the worker found it: "spin" (polling) or "loop" (the event loop's callback)."""
    ways: list[str] = []
    waited = fd._wait_callback

    async def via_loop(fd_: int) -> None:
        ways.append("loop")
        await waited(fd_)

    async def main() -> None:
        fd.bind(r)
        fd.spin = 5.0  # long enough that only the request can end it (it ends at once)
        fd._wait_callback = via_loop
        writer = threading.Timer(0.01, os.write, (w, b"x"))
        writer.start()
        await asyncio.wait_for(fd.wait_readable(r), 10)
        writer.join()
        if not ways:
            ways.append("spin")

    fuseloop.urgent = (lambda: True) if urgent else fuseloop._never
    try:
        asyncio.run(main())
    finally:
        fuseloop.urgent = fuseloop._never
    return ways


def test_the_next_request_is_polled_for_before_the_loop_sleeps(pipe) -> None:
    """A reader's next request comes microseconds after the reply: the worker polls for it
    (no loop turn, no wake-up of a sleeping shim), except while control work is pending."""
    fd, r, w = pipe
    assert _spin_run(fd, r, w, urgent=False) == ["spin"]
    os.read(r, 1)
    assert _spin_run(fd, r, w, urgent=True) == ["loop"]


def test_no_polling_without_a_second_cpu(pipe, monkeypatch) -> None:
    """On one CPU the reader cannot send its request while the worker polls: never spin."""
    fd, r, _w = pipe
    monkeypatch.setattr(fuseloop.os, "sched_getaffinity", lambda pid: {0})

    async def bind() -> None:
        fd.bind(r)

    asyncio.run(bind())
    assert fd.spin == 0.0
    monkeypatch.setattr(fuseloop.os, "sched_getaffinity", lambda pid: {0, 1})
    fd.release()
    asyncio.run(bind())
    assert fd.spin == fuseloop.SPIN


def test_requests_found_by_polling_count_toward_the_fair_turn(pipe) -> None:
    """Readers that keep the worker busy through its polling still let the loop turn every
    FAIR_EVERY requests: the shim's other tasks (page-cache chores, the Task API) run."""
    fd, r, w = pipe

    async def main() -> bool:
        fd.bind(r)
        fd.spin = 5.0
        fd.streak = fuseloop.FAIR_EVERY - 1
        writer = threading.Timer(0.01, os.write, (w, b"x"))
        writer.start()
        worker = asyncio.create_task(fd.wait_readable(r))
        await asyncio.sleep(0)  # the worker polls, finds it, ends the streak: yields a turn
        yielded = not worker.done()
        await asyncio.wait_for(worker, 2)
        writer.join()
        return yielded

    assert asyncio.run(main())
