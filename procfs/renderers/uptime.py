"""/proc/uptime for a container (procfs-views.md §8).

Uptime = time since the container's init started. Idle follows the kernel's meaning -- summed
over CPUs -- so it is ``uptime x visible CPUs - CPU time the container used`` (lxcfs prints
``uptime - busy``, which is below the kernel's idle as soon as there is more than one CPU).
"""

from __future__ import annotations


def uptime_values(
    boottime_now: float, start: float, ncpus: int, busy: float
) -> tuple[float, float]:
    """(uptime, idle) in seconds; ``start`` is the init's start on the same clock."""
    up = max(boottime_now - start, 0.0)
    idle = min(max(up * max(ncpus, 1) - busy, 0.0), up * max(ncpus, 1))
    return up, idle


def render_uptime(up: float, idle: float) -> bytes:
    return b"%.2f %.2f\n" % (up, idle)
