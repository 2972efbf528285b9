"""Read cgroup snapshots from cgroupfs (v1 and v2 into the same types).

Every read is a handful of small files, done synchronously: cgroupfs reads do not block, and the
FUSE ``open`` path that calls these must stay cheap. Errors surface as ``OSError``/``ValueError``
for the caller to turn into EIO.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from procfs.cgroups import CgroupRef
from procfs.snapshot import MemorySnapshot, MemoryStat

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


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


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
    swap_accounted = (cg / "memory.memsw.limit_in_bytes").exists()
    for d in dirs:
        limit = _min_limit(limit, _v1_limit(_read_int(d / "memory.limit_in_bytes")))
        if swap_accounted:
            memsw = _v1_limit(_read_int(d / "memory.memsw.limit_in_bytes"))
            swap_limit = _min_limit(swap_limit, memsw)
    usage = _read_int(cg / "memory.usage_in_bytes")
    raw = parse_flat_keyed((cg / "memory.stat").read_text())
    swap_usage = 0
    if swap_accounted:
        swap_usage = max(_read_int(cg / "memory.memsw.usage_in_bytes") - usage, 0)
    swappiness_file = cg / "memory.swappiness"
    swappiness = _read_int(swappiness_file) if swappiness_file.exists() else None
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
    swap_accounted = (cg / "memory.swap.current").exists()
    for d in dirs:
        limit = _min_limit(limit, _read_limit_v2(d / "memory.max"))
        if swap_accounted:
            swap_limit = _min_limit(swap_limit, _read_limit_v2(d / "memory.swap.max"))
    raw = parse_flat_keyed((cg / "memory.stat").read_text())
    return MemorySnapshot(
        limit=limit,
        usage=_read_int(cg / "memory.current"),
        stat=_stat_from(raw, _V2_STAT_KEYS),
        swap_accounted=swap_accounted,
        swap_limit=swap_limit,
        swap_usage=_read_int(cg / "memory.swap.current") if swap_accounted else 0,
        swappiness=None,
    )


def _read_limit_v2(path: Path) -> int | None:
    try:
        return _v2_limit(path.read_text())
    except FileNotFoundError:
        return None
