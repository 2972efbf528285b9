"""The control path goes first: while it has work, the FUSE worker yields after every request.

One event loop serves both the FUSE view and the Task API, and CRI puts a whole pod in one
shim, so one container's /proc readers share the loop with another container's State, Exec,
Kill and exit events. For throughput the FUSE worker serves queued requests back to back
(:data:`procfs.fuseloop.FAIR_EVERY` of them per loop turn); each step of a control request
(read, handler, runc, reply) would then wait behind a whole burst. While an RPC is in flight,
or shortly after a child exited (its exit must reach containerd and a waiting Wait), the
worker yields after every request instead, so a control step waits for at most one.
Measured in bench/starvation.py.

The state lives here, in the shim's stdlib-only ground, because the control path owns it: the
transport (:mod:`shim.transport.rpc`) and the reaper (:mod:`shim.task.reaper`) write it. The
view only asks, through the hook :data:`procfs.fuseloop.urgent`, which the serving process
(:mod:`shim.entry.daemon`) points at :func:`urgent` where it starts the view; procfs never
imports shim.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

#: How long an exit keeps the control path ahead: reap → TaskExit published → Wait answered.
EXIT_WINDOW = 0.05

_in_flight = 0
_until = 0.0


def urgent() -> bool:
    """Control work is pending: FUSE should yield the loop after each request."""
    return _in_flight > 0 or (_until > 0.0 and time.monotonic() < _until)


@contextmanager
def control() -> Iterator[None]:
    """Around one RPC handler (not Wait: containerd keeps one open per process)."""
    global _in_flight
    _in_flight += 1
    try:
        yield
    finally:
        _in_flight -= 1


def boost(seconds: float = EXIT_WINDOW) -> None:
    """Keep the control path ahead for `seconds` (an exit is on its way out)."""
    global _until
    _until = max(_until, time.monotonic() + seconds)
