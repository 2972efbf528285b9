"""/proc/loadavg for a container: the kernel's fixed-point load average (kernel/sched/loadavg.c)
fed with the container's own runnable + uninterruptible thread count every 5 s."""

from __future__ import annotations

from dataclasses import dataclass, field

FSHIFT = 11
FIXED_1 = 1 << FSHIFT
#: 1/exp(5s/1min), 1/exp(5s/5min), 1/exp(5s/15min) in fixed point.
EXP = (1884, 2014, 2037)
#: Kernel LOAD_FREQ: one sample every 5 s.
INTERVAL = 5.0


def calc_load(load: int, exp: int, active: int) -> int:
    """One decay step, bit for bit the kernel's ``calc_load`` (``active`` already x FIXED_1)."""
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return newload // FIXED_1


@dataclass
class LoadAverage:
    """Three averages in fixed point; :meth:`sample` once per :data:`INTERVAL`."""

    avenrun: list[int] = field(default_factory=lambda: [0, 0, 0])

    def sample(self, active_threads: int) -> None:
        active = active_threads * FIXED_1
        self.avenrun = [calc_load(a, e, active) for a, e in zip(self.avenrun, EXP, strict=True)]


def _fmt(x: int) -> bytes:
    x += FIXED_1 // 200  # round to 2 decimals, as fs/proc/loadavg.c
    return b"%d.%02d" % (x >> FSHIFT, ((x & (FIXED_1 - 1)) * 100) >> FSHIFT)


def render_loadavg(load: LoadAverage, running: int, threads: int, last_pid: int) -> bytes:
    """``1m 5m 15m running/total last_pid``; counts and pid from the container's namespace."""
    avgs = b" ".join(_fmt(a) for a in load.avenrun)
    return avgs + b" %d/%d %d\n" % (running, threads, last_pid)
