"""The virtual files a container can get, and how each is produced.

A producer gathers its inputs (host file + cgroup snapshot: a few small synchronous reads) and
hands them to a pure renderer. Adding a file = a renderer + a reader + one entry in
:data:`PRODUCERS`. A container whose cgroup is not known yet sees the host's file.

Producers get the caller's host tid (from the FUSE request; None when only sizing) so the
reader itself, blocked in this very request, is counted as running -- as the kernel counts a
process reading /proc/loadavg.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from procfs import fastio
from procfs.container import Container
from procfs.readers import pressure_path, read_cpu, read_io, read_memory, read_memory_stat
from procfs.renderers import (
    render_cpu_online,
    render_cpuinfo,
    render_diskstats,
    render_loadavg,
    render_meminfo,
    render_pressure,
    render_slabinfo,
    render_stat,
    render_swaps,
    render_uptime,
    render_vmstat,
)
from procfs.renderers.meminfo import parse_meminfo
from procfs.renderers.stat import StatInputs
from procfs.renderers.uptime import uptime_values
from procfs.tasks import scan_tasks

#: Where host files are read from (overridable for tests).
HOST_PROC = Path("/proc")
HOST_SYS = Path("/sys")
HZ = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

Producer = Callable[[Container, int | None], bytes]


def _host(name: str) -> bytes:
    return fastio.read_bytes(f"{HOST_PROC}/{name}")


def produce_meminfo(c: Container, caller: int | None = None) -> bytes:
    host = _host("meminfo")
    if c.ref is None:
        return host
    return render_meminfo(host, read_memory(c.ref))


def produce_cpuinfo(c: Container, caller: int | None = None) -> bytes:
    host = _host("cpuinfo")
    if c.ref is None:
        return host
    return render_cpuinfo(host, read_cpu(c.ref).visible())


def produce_cpu_online(c: Container, caller: int | None = None) -> bytes:
    if c.ref is None:
        return fastio.read_bytes(f"{HOST_SYS}/devices/system/cpu/online")
    return render_cpu_online(read_cpu(c.ref).visible())


def _host_btime(host_stat: bytes) -> int:
    for line in host_stat.splitlines():
        if line.startswith(b"btime "):
            return int(line.split()[1])
    return int(time.time() - time.clock_gettime(time.CLOCK_BOOTTIME))


def produce_stat(c: Container, caller: int | None = None) -> bytes:
    host = _host("stat")
    if c.ref is None:
        return host
    btime = _host_btime(host)
    if c.init_start is not None:
        btime += c.init_start // HZ
    tasks = scan_tasks(c.ref, ctxt=True, caller=caller)
    return render_stat(host, StatInputs(read_cpu(c.ref), tasks, btime, HZ), c.stat)


def produce_uptime(c: Container, caller: int | None = None) -> bytes:
    if c.ref is None or c.init_start is None:
        return _host("uptime")
    cpu = read_cpu(c.ref)
    up, idle = uptime_values(
        time.clock_gettime(time.CLOCK_BOOTTIME),
        c.init_start / HZ,
        len(cpu.visible()),
        cpu.usage_ns / 1e9,
    )
    return render_uptime(up, idle)


def produce_loadavg(c: Container, caller: int | None = None) -> bytes:
    if c.ref is None:
        return _host("loadavg")
    t = scan_tasks(c.ref, caller=caller)
    return render_loadavg(c.load, t.running, t.threads, t.last_pid)


def produce_diskstats(c: Container, caller: int | None = None) -> bytes:
    host = _host("diskstats")
    if c.ref is None:
        return host
    return render_diskstats(host, read_io(c.ref))


def produce_swaps(c: Container, caller: int | None = None) -> bytes:
    host = _host("swaps")
    if c.ref is None:
        return host
    return render_swaps(host, _host("meminfo"), read_memory(c.ref))


def produce_slabinfo(c: Container, caller: int | None = None) -> bytes:
    # Only the header is shown (renderers.slabinfo): not the host's whole table (~25 KB).
    host = fastio.read_head(f"{HOST_PROC}/slabinfo", 2)
    own: bytes | None = None
    d = c.ref.dir("memory") if c.ref is not None and c.ref.version("memory") == 1 else None
    if d is not None:
        try:
            own = fastio.read_bytes(f"{d}/memory.kmem.slabinfo")
        except OSError:
            own = None
    return render_slabinfo(host, own)


def produce_vmstat(c: Container, caller: int | None = None) -> bytes:
    host = _host("vmstat")
    if c.ref is None:
        return host
    version, stat = read_memory_stat(c.ref)
    free = parse_meminfo(produce_meminfo(c)).get("MemFree", 0) * 1024  # the same MemFree
    return render_vmstat(host, stat, version, free, c.vmstat, PAGE_SIZE)


def _pressure(resource: str) -> Producer:
    def produce(c: Container, caller: int | None = None) -> bytes:
        host = _host(f"pressure/{resource}")
        path = pressure_path(c.ref, resource) if c.ref is not None else None
        if path is None:
            return host
        return render_pressure(host, fastio.read_bytes(str(path)))

    produce.__name__ = f"produce_pressure_{resource}"
    return produce


#: Container path → producer. Only these paths may be requested in ``View.add``.
PRODUCERS: dict[str, Producer] = {
    "/proc/meminfo": produce_meminfo,
    "/proc/cpuinfo": produce_cpuinfo,
    "/proc/stat": produce_stat,
    "/proc/uptime": produce_uptime,
    "/proc/loadavg": produce_loadavg,
    "/proc/diskstats": produce_diskstats,
    "/proc/swaps": produce_swaps,
    "/proc/slabinfo": produce_slabinfo,
    "/sys/devices/system/cpu/online": produce_cpu_online,
    "/proc/vmstat": produce_vmstat,
    "/proc/pressure/cpu": _pressure("cpu"),
    "/proc/pressure/memory": _pressure("memory"),
    "/proc/pressure/io": _pressure("io"),
}
