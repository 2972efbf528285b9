"""Stats: a container's cgroup counters as containerd/cgroups `Metrics` (v1 or v2).

The same messages containerd-shim-runc-v2 returns (`io.containerd.cgroups.v1.Metrics` /
`io.containerd.cgroups.v2.Metrics` in an Any), so `ctr task metrics` and CRI ContainerStats
decode them. Files that a kernel lacks are skipped, as the Go cgroups library does.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from procfs.cgroups import CgroupRef
from protos.gen.io.containerd.cgroups import v1 as m1
from protos.gen.io.containerd.cgroups import v2 as m2

_MAX = 2**64 - 1
#: USER_HZ: cpuacct.stat counts in clock ticks
_TICK_NS = 10**9 // 100


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(path: Path, default: int = 0) -> int:
    text = _read(path)
    if text is None:
        return default
    text = text.strip()
    if text == "max":
        return _MAX
    try:
        return int(text)
    except ValueError:
        return default


def _keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def exists(ref: CgroupRef) -> bool:
    d = ref.dir("memory") or ref.dir("pids")
    return d is not None and d.is_dir()


def metrics(ref: CgroupRef) -> m1.Metrics | m2.Metrics:
    return v2_metrics(ref) if ref.version("memory") == 2 else v1_metrics(ref)


# -- cgroup v1 ---------------------------------------------------------------------------------


def _v1_entry(d: Path, prefix: str) -> m1.MemoryEntry:
    p = f"{prefix}." if prefix else ""
    return m1.MemoryEntry(
        limit=_int(d / f"memory.{p}limit_in_bytes"),
        usage=_int(d / f"memory.{p}usage_in_bytes"),
        max=_int(d / f"memory.{p}max_usage_in_bytes"),
        failcnt=_int(d / f"memory.{p}failcnt"),
    )


def _v1_blkio(d: Path) -> m1.BlkIoStat:
    def entries(name: str) -> list[m1.BlkIoEntry]:
        out = []
        for line in (_read(d / name) or "").splitlines():
            parts = line.split()
            if len(parts) == 3 and ":" in parts[0]:
                major, minor = parts[0].split(":")
                out.append(
                    m1.BlkIoEntry(
                        op=parts[1], major=int(major), minor=int(minor), value=int(parts[2])
                    )
                )
        return out

    # the Go library prefers the CFQ files, and falls back to throttle.* when they are empty
    service = entries("blkio.io_service_bytes_recursive") or entries(
        "blkio.throttle.io_service_bytes_recursive"
    )
    serviced = entries("blkio.io_serviced_recursive") or entries(
        "blkio.throttle.io_serviced_recursive"
    )
    return m1.BlkIoStat(io_service_bytes_recursive=service, io_serviced_recursive=serviced)


_V1_MEMORY_FIELDS = [
    f.name for f in m1.MemoryStat.__dataclass_fields__.values() if f.type in (int, "int")
]
#: MemoryStat field -> memory.stat key, where they differ
_V1_FILE_KEYS = {
    "pg_pg_in": "pgpgin",
    "pg_pg_out": "pgpgout",
    "pg_fault": "pgfault",
    "pg_maj_fault": "pgmajfault",
    "hierarchical_swap_limit": "hierarchical_memsw_limit",
    "total_pg_pg_in": "total_pgpgin",
    "total_pg_pg_out": "total_pgpgout",
    "total_pg_fault": "total_pgfault",
    "total_pg_maj_fault": "total_pgmajfault",
}


def v1_metrics(ref: CgroupRef) -> m1.Metrics:
    out = m1.Metrics()
    if (d := ref.dir("pids")) is not None and d.is_dir():
        out.pids = m1.PidsStat(
            current=_int(d / "pids.current"),
            limit=0 if _int(d / "pids.max") == _MAX else _int(d / "pids.max"),
        )
    if (d := ref.dir("cpuacct")) is not None and d.is_dir():
        stat = _keyed(d / "cpuacct.stat")
        percpu = [int(x) for x in (_read(d / "cpuacct.usage_percpu") or "").split()]
        out.cpu = m1.CpuStat(
            usage=m1.CpuUsage(
                total=_int(d / "cpuacct.usage"),
                kernel=stat.get("system", 0) * _TICK_NS,
                user=stat.get("user", 0) * _TICK_NS,
                per_cpu=percpu,
            )
        )
    if (d := ref.dir("cpu")) is not None and d.is_dir():
        t = _keyed(d / "cpu.stat")
        out.cpu.throttling = m1.Throttle(
            periods=t.get("nr_periods", 0),
            throttled_periods=t.get("nr_throttled", 0),
            throttled_time=t.get("throttled_time", 0),
        )
    if (d := ref.dir("memory")) is not None and d.is_dir():
        s = _keyed(d / "memory.stat")
        out.memory = m1.MemoryStat(
            **{n: s.get(_V1_FILE_KEYS.get(n, n), 0) for n in _V1_MEMORY_FIELDS}
        )
        out.memory.usage = _v1_entry(d, "")
        out.memory.swap = _v1_entry(d, "memsw")
        out.memory.kernel = _v1_entry(d, "kmem")
        out.memory.kernel_tcp = _v1_entry(d, "kmem.tcp")
        oom = _keyed(d / "memory.oom_control")
        out.memory_oom_control = m1.MemoryOomControl(
            oom_kill_disable=oom.get("oom_kill_disable", 0),
            under_oom=oom.get("under_oom", 0),
            oom_kill=oom.get("oom_kill", 0),
        )
    if (d := ref.dir("blkio")) is not None and d.is_dir():
        out.blkio = _v1_blkio(d)
    return out


# -- cgroup v2 ---------------------------------------------------------------------------------


def v2_metrics(ref: CgroupRef) -> m2.Metrics:
    d = ref.dir("memory")
    out = m2.Metrics()
    if d is None or not d.is_dir():
        return out
    pids_max = _int(d / "pids.max")
    out.pids = m2.PidsStat(
        current=_int(d / "pids.current"), limit=0 if pids_max == _MAX else pids_max
    )
    c = _keyed(d / "cpu.stat")
    out.cpu = m2.CpuStat(
        usage_usec=c.get("usage_usec", 0),
        user_usec=c.get("user_usec", 0),
        system_usec=c.get("system_usec", 0),
        nr_periods=c.get("nr_periods", 0),
        nr_throttled=c.get("nr_throttled", 0),
        throttled_usec=c.get("throttled_usec", 0),
    )
    s = _keyed(d / "memory.stat")
    fields = {f.name for f in m2.MemoryStat.__dataclass_fields__.values() if f.type in (int, "int")}
    out.memory = m2.MemoryStat(**{k: v for k, v in s.items() if k in fields})
    out.memory.usage = _int(d / "memory.current")
    out.memory.usage_limit = _int(d / "memory.max")
    out.memory.swap_usage = _int(d / "memory.swap.current")
    out.memory.swap_limit = _int(d / "memory.swap.max")
    e = _keyed(d / "memory.events")
    out.memory_events = m2.MemoryEvents(
        low=e.get("low", 0),
        high=e.get("high", 0),
        max=e.get("max", 0),
        oom=e.get("oom", 0),
        oom_kill=e.get("oom_kill", 0),
    )
    return out
