"""Cgroup snapshots: the version-neutral input of the renderers.

Readers for cgroup v1 and v2 fill the same types, so one renderer serves both. Conventions:

* all quantities are **bytes** (renderers convert to kB);
* a limit of ``None`` means *no limit anywhere up the hierarchy*;
* statistics a cgroup version does not provide are 0 (lxcfs prints 0 for them too).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemoryStat:
    """Hierarchical ``memory.stat`` counters, under version-neutral names (bytes)."""

    cache: int = 0  # v2 file, v1 total_cache
    shmem: int = 0
    mapped_file: int = 0  # v2 file_mapped, v1 total_mapped_file
    dirty: int = 0  # v2 file_dirty, v1 total_dirty
    writeback: int = 0  # v2 file_writeback, v1 total_writeback
    active_anon: int = 0
    inactive_anon: int = 0
    active_file: int = 0
    inactive_file: int = 0
    unevictable: int = 0
    anon_huge: int = 0  # v2 anon_thp, v1 total_rss_huge
    shmem_huge: int = 0  # v2 shmem_thp, v1: 0
    file_huge: int = 0  # v2 file_thp, v1: 0
    slab_reclaimable: int = 0  # v2 only
    slab_unreclaimable: int = 0  # v2 only
    zswap: int = 0  # v2 only
    zswapped: int = 0  # v2 only

    @property
    def slab(self) -> int:
        return self.slab_reclaimable + self.slab_unreclaimable


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """What /proc/meminfo (and later /proc/swaps) of one container needs.

    ``limit``: effective memory limit, the minimum over the cgroup and its ancestors.
    ``usage``: memory charged to the cgroup, page cache included.
    ``swap_accounted``: False when the kernel does not account swap for cgroups (v1 without
    ``memory.memsw.*``, v2 without ``memory.swap.*``); swap fields are then meaningless.
    ``swap_limit``: most swap the cgroup can use -- v2 ``memory.swap.max``; v1 the
    ``memsw`` (RAM+swap) limit, since any of that may be swapped out (lxcfs reports it so).
    ``swap_usage``: swap in use (v2 ``memory.swap.current``; v1 ``memsw.usage - usage``).
    ``swappiness``: v1 ``memory.swappiness``; None on v2 (no such file).
    """

    limit: int | None
    usage: int
    stat: MemoryStat
    swap_accounted: bool = False
    swap_limit: int | None = None
    swap_usage: int = 0
    swappiness: int | None = None
