"""Read cgroup snapshots from cgroupfs (v1 and v2 into the same types).

Every read is a handful of small files, done synchronously: cgroupfs reads do not block, and the
FUSE ``open`` path that calls these must stay cheap. Errors surface as ``OSError``/``ValueError``
for the caller to turn into EIO.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from procfs import fastio
from procfs.cgroups import UNIFIED, CgroupRef
from procfs.cpuset import parse_cpuset
from procfs.snapshot import CpuSnapshot, DiskIO, MemorySnapshot, MemoryStat

#: Host CPUs, the cpuset of last resort (v2 cgroup without the cpuset controller anywhere).
HOST_ONLINE = Path("/sys/devices/system/cpu/online")

#: cgroup v1 prints "no limit" as LONG_MAX rounded down to the page size; anything at or above
#: this (for any page size up to 64 KiB) is treated as unlimited.
V1_UNLIMITED_MIN = 0x7FFFFFFFFFFF0000

# memory.stat key per MemoryStat field. Matched exactly (lxcfs' prefix matching makes
# v2 `file` swallow `file_mapped` and v1 `total_rss` swallow `total_rss_huge`).
_V1_STAT_KEYS = {
    "cache": "total_cache",
    "shmem": "total_shmem",
    "mapped_file": "total_mapped_file",
    "dirty": "total_dirty",
    "writeback": "total_writeback",
    "active_anon": "total_active_anon",
    "inactive_anon": "total_inactive_anon",
    "active_file": "total_active_file",
    "inactive_file": "total_inactive_file",
    "unevictable": "total_unevictable",
    "anon_huge": "total_rss_huge",
}
_V2_STAT_KEYS = {
    "cache": "file",
    "shmem": "shmem",
    "mapped_file": "file_mapped",
    "dirty": "file_dirty",
    "writeback": "file_writeback",
    "active_anon": "active_anon",
    "inactive_anon": "inactive_anon",
    "active_file": "active_file",
    "inactive_file": "inactive_file",
    "unevictable": "unevictable",
    "anon_huge": "anon_thp",
    "shmem_huge": "shmem_thp",
    "file_huge": "file_thp",
    "slab_reclaimable": "slab_reclaimable",
    "slab_unreclaimable": "slab_unreclaimable",
    "zswap": "zswap",
    "zswapped": "zswapped",
}


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat) → dict; non-numeric lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _stat_from(raw: Mapping[str, int], keys: Mapping[str, str]) -> MemoryStat:
    return MemoryStat(**{f: raw.get(k, 0) for f, k in keys.items()})


def _read_int(path: str | Path) -> int:
    return int(fastio.read_text(path).strip())


def _v1_limit(value: int) -> int | None:
    return None if value >= V1_UNLIMITED_MIN else value


def _v2_limit(text: str) -> int | None:
    text = text.strip()
    return None if text in ("max", "") else int(text)


def _min_limit(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def read_memory(ref: CgroupRef) -> MemorySnapshot:
    """Snapshot of the memory cgroup of ``ref``, from whichever hierarchy serves ``memory``."""
    version = ref.version("memory")
    dirs = ref.ancestors("memory")
    if version is None or not dirs:
        raise LookupError("no memory cgroup known for this container")
    if version == 1:
        return read_memory_v1(dirs)
    return read_memory_v2(dirs)


def read_memory_v1(dirs: list[Path]) -> MemorySnapshot:
    """cgroup v1: ``dirs`` = the cgroup directory then its ancestors up to the hierarchy root."""
    cg = dirs[0]
    limit: int | None = None
    swap_limit: int | None = None
    swap_accounted = os.path.exists(f"{cg}/memory.memsw.limit_in_bytes")
    for d in dirs:
        limit = _min_limit(limit, _v1_limit(_read_int(f"{d}/memory.limit_in_bytes")))
        if swap_accounted:
            memsw = _v1_limit(_read_int(f"{d}/memory.memsw.limit_in_bytes"))
            swap_limit = _min_limit(swap_limit, memsw)
    usage = _read_int(f"{cg}/memory.usage_in_bytes")
    raw = parse_flat_keyed(fastio.read_text(f"{cg}/memory.stat"))
    swap_usage = 0
    if swap_accounted:
        swap_usage = max(_read_int(f"{cg}/memory.memsw.usage_in_bytes") - usage, 0)
    swappiness_file = f"{cg}/memory.swappiness"
    swappiness = _read_int(swappiness_file) if os.path.exists(swappiness_file) else None
    return MemorySnapshot(
        limit=limit,
        usage=usage,
        stat=_stat_from(raw, _V1_STAT_KEYS),
        swap_accounted=swap_accounted,
        swap_limit=swap_limit,
        swap_usage=swap_usage,
        swappiness=swappiness,
    )


def read_memory_v2(dirs: list[Path]) -> MemorySnapshot:
    """cgroup v2: ``dirs`` = the cgroup directory then its ancestors up to the hierarchy root.

    The root cgroup has no ``memory.max``/``memory.swap.max``; missing files up the chain
    simply contribute no limit.
    """
    cg = dirs[0]
    limit: int | None = None
    swap_limit: int | None = None
    swap_accounted = os.path.exists(f"{cg}/memory.swap.current")
    for d in dirs:
        limit = _min_limit(limit, _read_limit_v2(f"{d}/memory.max"))
        if swap_accounted:
            swap_limit = _min_limit(swap_limit, _read_limit_v2(f"{d}/memory.swap.max"))
    raw = parse_flat_keyed(fastio.read_text(f"{cg}/memory.stat"))
    return MemorySnapshot(
        limit=limit,
        usage=_read_int(f"{cg}/memory.current"),
        stat=_stat_from(raw, _V2_STAT_KEYS),
        swap_accounted=swap_accounted,
        swap_limit=swap_limit,
        swap_usage=_read_int(f"{cg}/memory.swap.current") if swap_accounted else 0,
        swappiness=None,
    )


def _read_limit_v2(path: str | Path) -> int | None:
    try:
        return _v2_limit(fastio.read_text(path))
    except FileNotFoundError:
        return None


# --- CPU ------------------------------------------------------------------------------------


def _read_text(path: str | Path) -> str | None:
    try:
        return fastio.read_text(path)
    except FileNotFoundError:
        return None


def _first_cpuset(dirs: list[Path], names: tuple[str, ...]) -> list[int]:
    """Nearest non-empty cpuset list up the hierarchy (an empty v1 cpuset.cpus means
    "not configured here" for readers like us; the kernel then runs tasks on the parent's)."""
    for d in dirs:
        for name in names:
            text = _read_text(f"{d}/{name}")
            if text and text.strip():
                return parse_cpuset(text)
    return []


def _tighter(cur: tuple[int, int] | None, quota: int, period: int) -> tuple[int, int]:
    """The smaller of two quota/period ratios (an ancestor's quota caps its children)."""
    if cur is None or quota * cur[1] < cur[0] * period:
        return quota, period
    return cur


def read_cpu(ref: CgroupRef, online: Path = HOST_ONLINE) -> CpuSnapshot:
    """CPU snapshot from the cpuset, cpu and cpuacct controllers (v1) or cgroup2 files."""
    if ref.version("cpu") == 1 or ref.version("cpuset") == 1:
        return read_cpu_v1(ref, online)
    return read_cpu_v2(ref.ancestors("cpu"), online)


def read_cpu_v1(ref: CgroupRef, online: Path = HOST_ONLINE) -> CpuSnapshot:
    """cgroup v1: cpu and cpuacct may be one hierarchy or two (both work)."""
    cpus = _first_cpuset(ref.ancestors("cpuset"), ("cpuset.cpus", "cpuset.effective_cpus"))
    if not cpus:
        cpus = parse_cpuset(fastio.read_text(online))
    quota: tuple[int, int] | None = None
    for d in ref.ancestors("cpu"):
        q = _read_text(f"{d}/cpu.cfs_quota_us")
        p = _read_text(f"{d}/cpu.cfs_period_us")
        if q is None or p is None or int(q) <= 0:
            continue
        quota = _tighter(quota, int(q), int(p))
    percpu: dict[int, tuple[int, int]] | None = None
    user = system = 0
    acct = ref.dir("cpuacct")
    if acct is not None:
        text = _read_text(f"{acct}/cpuacct.usage_all")
        if text is not None:
            percpu = parse_usage_all(text)
            user = sum(u for u, _ in percpu.values())
            system = sum(s for _, s in percpu.values())
        else:
            user = _read_int(f"{acct}/cpuacct.usage")
    return CpuSnapshot(
        cpuset=tuple(cpus),
        quota_us=quota[0] if quota else None,
        period_us=quota[1] if quota else 100_000,
        percpu=percpu,
        user_ns=user,
        system_ns=system,
    )


def parse_usage_all(text: str) -> dict[int, tuple[int, int]]:
    """``cpuacct.usage_all``: header ``cpu user system``, then ``N user_ns system_ns``."""
    out: dict[int, tuple[int, int]] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3:
            out[int(fields[0])] = (int(fields[1]), int(fields[2]))
    return out


def read_cpu_v2(dirs: list[Path], online: Path = HOST_ONLINE) -> CpuSnapshot:
    """cgroup v2: ``dirs`` = the cgroup then its ancestors; per-CPU usage does not exist."""
    if not dirs:
        raise LookupError("no cpu cgroup known for this container")
    cpus = _first_cpuset(dirs, ("cpuset.cpus.effective", "cpuset.cpus"))
    if not cpus:
        cpus = parse_cpuset(fastio.read_text(online))
    quota: tuple[int, int] | None = None
    for d in dirs:
        text = _read_text(f"{d}/cpu.max")
        fields = (text or "").split()
        if not fields or fields[0] == "max":
            continue
        period = int(fields[1]) if len(fields) > 1 else 100_000
        quota = _tighter(quota, int(fields[0]), period)
    raw = parse_flat_keyed(_read_text(f"{dirs[0]}/cpu.stat") or "")
    return CpuSnapshot(
        cpuset=tuple(cpus),
        quota_us=quota[0] if quota else None,
        period_us=quota[1] if quota else 100_000,
        percpu=None,
        user_ns=raw.get("user_usec", 0) * 1000,
        system_ns=raw.get("system_usec", 0) * 1000,
    )


# --- block IO -------------------------------------------------------------------------------

#: v1 blkio files per DiskIO field group, best first: CFQ names (old kernels, what lxcfs
#: reads), BFQ's, then the throttle layer's, which count every bio whatever the scheduler.
_V1_SERVICED = (
    "blkio.io_serviced_recursive",
    "blkio.throttle.io_serviced_recursive",
    "blkio.bfq.io_serviced_recursive",
)
_V1_BYTES = (
    "blkio.io_service_bytes_recursive",
    "blkio.throttle.io_service_bytes_recursive",
    "blkio.bfq.io_service_bytes_recursive",
)
_V1_MERGED = ("blkio.io_merged_recursive", "blkio.bfq.io_merged_recursive")
_V1_SERVICE_TIME = ("blkio.io_service_time_recursive", "blkio.bfq.io_service_time_recursive")
_V1_WAIT_TIME = ("blkio.io_wait_time_recursive", "blkio.bfq.io_wait_time_recursive")

Rwstat = dict[tuple[int, int], dict[str, int]]


def parse_blkio_rwstat(text: str) -> Rwstat:
    """v1 ``MAJ:MIN Read|Write|Sync|Async|Discard|Total N`` lines → {(maj, min): {op: N}}."""
    out: Rwstat = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue
        maj, _, mi = fields[0].partition(":")
        out.setdefault((int(maj), int(mi)), {})[fields[1]] = int(fields[2])
    return out


def _first_rwstat(d: Path, names: tuple[str, ...]) -> Rwstat:
    """First of ``names`` that exists *and* has per-device rows (empty CFQ/BFQ stats are
    common on modern schedulers, lxc/lxcfs#599)."""
    found: Rwstat = {}
    for name in names:
        text = _read_text(f"{d}/{name}")
        if text is None:
            continue
        found = parse_blkio_rwstat(text)
        if found:
            return found
    return found


def read_io(ref: CgroupRef) -> list[DiskIO]:
    """Per-device IO counters of the container's cgroup (v1 blkio or v2 io.stat)."""
    d = ref.dir("blkio") if ref.version("blkio") == 1 else ref.dir("io")
    if d is None:
        raise LookupError("no blkio/io cgroup known for this container")
    if ref.version("blkio") == 1:
        return read_io_v1(d)
    return read_io_v2(d)


def read_io_v1(d: Path) -> list[DiskIO]:
    serviced = _first_rwstat(d, _V1_SERVICED)
    nbytes = _first_rwstat(d, _V1_BYTES)
    merged = _first_rwstat(d, _V1_MERGED)
    svc = _first_rwstat(d, _V1_SERVICE_TIME)
    wait = _first_rwstat(d, _V1_WAIT_TIME)
    out = []
    for dev in sorted(set(serviced) | set(nbytes)):
        s, b, m = serviced.get(dev, {}), nbytes.get(dev, {}), merged.get(dev, {})
        t, w = svc.get(dev, {}), wait.get(dev, {})

        def ms(op: str, t: dict[str, int] = t, w: dict[str, int] = w) -> int:
            return (t.get(op, 0) + w.get(op, 0)) // 1_000_000

        out.append(
            DiskIO(
                major=dev[0],
                minor=dev[1],
                reads=s.get("Read", 0),
                writes=s.get("Write", 0),
                discards=s.get("Discard", 0),
                read_merged=m.get("Read", 0),
                write_merged=m.get("Write", 0),
                discard_merged=m.get("Discard", 0),
                read_bytes=b.get("Read", 0),
                write_bytes=b.get("Write", 0),
                discard_bytes=b.get("Discard", 0),
                read_ms=ms("Read"),
                write_ms=ms("Write"),
                discard_ms=ms("Discard"),
                io_ms=t.get("Total", 0) // 1_000_000,
            )
        )
    return out


def read_io_v2(d: Path) -> list[DiskIO]:
    """``io.stat``: ``MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..``."""
    out = []
    for line in (_read_text(f"{d}/io.stat") or "").splitlines():
        dev, *pairs = line.split()
        maj, _, mi = dev.partition(":")
        kv = {}
        for pair in pairs:
            k, _, v = pair.partition("=")
            if v.isdigit():
                kv[k] = int(v)
        out.append(
            DiskIO(
                major=int(maj),
                minor=int(mi),
                reads=kv.get("rios", 0),
                writes=kv.get("wios", 0),
                discards=kv.get("dios", 0),
                read_bytes=kv.get("rbytes", 0),
                write_bytes=kv.get("wbytes", 0),
                discard_bytes=kv.get("dbytes", 0),
            )
        )
    return out


def read_memory_stat(ref: CgroupRef) -> tuple[int, dict[str, int]]:
    """(cgroup version, the memory cgroup's whole ``memory.stat``) for /proc/vmstat."""
    version, d = ref.version("memory"), ref.dir("memory")
    if version is None or d is None:
        raise LookupError("no memory cgroup known for this container")
    return version, parse_flat_keyed(fastio.read_text(f"{d}/memory.stat"))


def pressure_path(ref: CgroupRef, resource: str) -> Path | None:
    """The container's cgroup2 ``<resource>.pressure`` (PSI is kept for every cgroup2
    directory, controllers enabled or not: on hybrid hosts too), or None."""
    root, path = ref.hierarchies.v2, ref.paths.get(UNIFIED)
    if root is None or path is None:
        return None
    f = root.joinpath(*[p for p in path.split("/") if p], f"{resource}.pressure")
    return f if f.exists() else None
