"""The container's answer to sysinfo(2), from the same producers as its /proc files.

busybox ``free``, glibc's ``sysconf(_SC_PHYS_PAGES/_SC_AVPHYS_PAGES)`` and ``get_nprocs``-style
sizing read memory through sysinfo(2), which no FUSE file can change. The shim answers that
syscall (shim/task/sysinfo_notify.py); the numbers here are parsed from the very meminfo, uptime and
loadavg renderings the container reads, so ``free`` and ``cat /proc/meminfo`` always agree.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass

from procfs import fastio
from procfs.container import Container
from procfs.files import HOST_PROC, HZ, produce_meminfo
from procfs.renderers.loadavg import FSHIFT
from procfs.renderers.meminfo import parse_meminfo
from procfs.renderers.uptime import uptime_values
from procfs.tasks import cgroup_threads

#: struct sysinfo on LP64 (x86_64, arm64, ppc64le, s390x): long uptime; unsigned long
#: loads[3], totalram, freeram, sharedram, bufferram, totalswap, freeswap; unsigned short
#: procs, pad; unsigned long totalhigh, freehigh; unsigned int mem_unit; padded to 112.
_LAYOUT = struct.Struct("@l3L6LHHLLI4x")
SIZE = _LAYOUT.size
#: loads[] are fixed point with 16 fractional bits (SI_LOAD_SHIFT), the kernel's avenrun 11.
SI_LOAD_SHIFT = 16
_USHRT_MAX = 0xFFFF


@dataclass(frozen=True)
class Sysinfo:
    """The fields a container sees; memory in bytes (``mem_unit`` 1, as 64-bit kernels)."""

    uptime: int
    loads: tuple[int, int, int]
    totalram: int
    freeram: int
    sharedram: int
    bufferram: int
    totalswap: int
    freeswap: int
    procs: int

    def pack(self) -> bytes:
        """The bytes the kernel would copy to the caller's ``struct sysinfo``."""
        return _LAYOUT.pack(
            self.uptime,
            *self.loads,
            self.totalram,
            self.freeram,
            self.sharedram,
            self.bufferram,
            self.totalswap,
            self.freeswap,
            min(self.procs, _USHRT_MAX),
            0,
            0,
            0,
            1,
        )


def parse_loadavg(loadavg: bytes) -> tuple[tuple[int, int, int], int]:
    """The three averages as sysinfo's fixed point, and the total thread count."""
    words = loadavg.split()
    loads = []
    for w in words[:3]:
        whole, _, frac = w.partition(b".")
        loads.append((int(whole) << SI_LOAD_SHIFT) + (int(frac or b"0") << SI_LOAD_SHIFT) // 100)
    threads = int(words[3].split(b"/")[1]) if len(words) > 3 and b"/" in words[3] else 0
    return (loads[0], loads[1], loads[2]), threads


def render_sysinfo(
    meminfo: bytes, uptime: bytes, loadavg: bytes, avenrun: list[int] | None = None
) -> Sysinfo:
    """Pure: a sysinfo from the container's rendered files.

    ``avenrun`` (the view's kernel-fixed-point averages, when known) gives the loads
    without the two-decimal rounding of the text; uptime rounds up as the kernel does.
    """
    m = {k: v * 1024 for k, v in parse_meminfo(meminfo).items()}  # kB lines
    text_loads, threads = parse_loadavg(loadavg)
    if avenrun is not None:
        shift = SI_LOAD_SHIFT - FSHIFT
        loads = (avenrun[0] << shift, avenrun[1] << shift, avenrun[2] << shift)
    else:
        loads = text_loads
    return Sysinfo(
        uptime=math.ceil(float(uptime.split()[0])),
        loads=loads,
        totalram=m.get("MemTotal", 0),
        freeram=m.get("MemFree", 0),
        sharedram=m.get("Shmem", 0),
        bufferram=m.get("Buffers", 0),
        totalswap=m.get("SwapTotal", 0),
        freeswap=m.get("SwapFree", 0),
        procs=threads,
    )


def produce_sysinfo(c: Container) -> Sysinfo:
    """The container's sysinfo now, from the same sources as its /proc files.

    Memory is parsed from the very meminfo rendering; uptime is /proc/uptime's first field
    (same clock, same init start); loads are the view's sampled averages; procs counts the
    cgroup's threads as /proc/loadavg's total does, without reading each thread's state
    (this runs on every sysinfo call, so it skips what only the files need).
    """
    if c.ref is None or c.init_start is None:
        host = (fastio.read_bytes(f"{HOST_PROC}/{name}") for name in ("uptime", "loadavg"))
        return render_sysinfo(produce_meminfo(c), *host)
    up, _ = uptime_values(time.clock_gettime(time.CLOCK_BOOTTIME), c.init_start / HZ, 1, 0.0)
    loads = b"0 0 0 0/%d 0" % len(cgroup_threads(c.ref))
    return render_sysinfo(produce_meminfo(c), b"%.2f 0" % up, loads, c.load.avenrun)
