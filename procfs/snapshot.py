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


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """What cpuinfo, stat, uptime and cpu/online need of one container's CPU cgroups.

    ``cpuset``: host CPU ids the container may run on (sorted).
    ``quota_us``/``period_us``: CFS bandwidth; ``quota_us`` None = no quota.
    ``percpu``: {host cpu: (user ns, system ns)} when the cgroup accounts per CPU (v1
    ``cpuacct.usage_all``); None on v2, where only the totals exist.
    ``user_ns``/``system_ns``: total CPU time of the cgroup (v1 ``cpuacct.usage_user/_sys``,
    v2 ``cpu.stat`` ``user_usec``/``system_usec``).
    """

    cpuset: tuple[int, ...]
    quota_us: int | None = None
    period_us: int = 100_000
    percpu: dict[int, tuple[int, int]] | None = None
    user_ns: int = 0
    system_ns: int = 0

    @property
    def usage_ns(self) -> int:
        return self.user_ns + self.system_ns

    def max_cpus(self) -> int:
        """CPUs the container can keep busy: the cpuset, cut to ``ceil(quota/period)``.

        Rounded up like lxcfs ``--enable-cfs``: 0.5 CPU shows 1 CPU, 1.5 shows 2.
        """
        n = len(self.cpuset)
        if self.quota_us is None or self.quota_us <= 0 or self.period_us <= 0:
            return n
        return max(1, min(n, -(-self.quota_us // self.period_us)))

    def visible(self) -> tuple[int, ...]:
        """Host ids of the CPUs shown, in order; shown renumbered from 0."""
        return self.cpuset[: self.max_cpus()]


@dataclass(frozen=True, slots=True)
class DiskIO:
    """One block device's counters for a cgroup (v1 blkio / v2 io.stat), kernel units."""

    major: int
    minor: int
    reads: int = 0
    writes: int = 0
    discards: int = 0
    read_merged: int = 0
    write_merged: int = 0
    discard_merged: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    discard_bytes: int = 0
    read_ms: int = 0
    write_ms: int = 0
    discard_ms: int = 0
    io_ms: int = 0


@dataclass(frozen=True, slots=True)
class TaskCounts:
    """The container cgroup's threads, scanned from /proc (host view).

    ``running``/``blocked``: threads in state R / D. ``last_pid``: highest pid number in the
    container's own pid namespace (what the container would call "last pid").
    ``ctxt``: voluntary + involuntary context switches of the live threads.
    """

    threads: int = 0
    running: int = 0
    blocked: int = 0
    last_pid: int = 0
    ctxt: int = 0
