"""/proc/vmstat for a container, from its memory cgroup's ``memory.stat`` (v1 or v2).

The host file's lines, in the host's order and with the kernel's names. Page gauges come from
the cgroup's byte counts (in pages; THP lines in huge pages and ``nr_kernel_stack`` in KiB,
as the kernel prints them); ``nr_free_pages`` from the container's MemFree, so vmstat and
meminfo agree; event counters from the keys the cgroup counts under the same name (v1:
``total_<name>``). Lines the cgroup has no count for are 0, never the host's. Counters never go
backwards between readings (:class:`VmstatHistory`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: vmstat gauge → (v2 memory.stat key, v1 memory.stat key or "", unit: page/thp/kib).
GAUGES: dict[str, tuple[str, str, str]] = {
    "nr_inactive_anon": ("inactive_anon", "total_inactive_anon", "page"),
    "nr_active_anon": ("active_anon", "total_active_anon", "page"),
    "nr_inactive_file": ("inactive_file", "total_inactive_file", "page"),
    "nr_active_file": ("active_file", "total_active_file", "page"),
    "nr_unevictable": ("unevictable", "total_unevictable", "page"),
    "nr_zone_inactive_anon": ("inactive_anon", "total_inactive_anon", "page"),
    "nr_zone_active_anon": ("active_anon", "total_active_anon", "page"),
    "nr_zone_inactive_file": ("inactive_file", "total_inactive_file", "page"),
    "nr_zone_active_file": ("active_file", "total_active_file", "page"),
    "nr_zone_unevictable": ("unevictable", "total_unevictable", "page"),
    "nr_slab_reclaimable": ("slab_reclaimable", "", "page"),
    "nr_slab_unreclaimable": ("slab_unreclaimable", "", "page"),
    "nr_anon_pages": ("anon", "total_rss", "page"),
    "nr_mapped": ("file_mapped", "total_mapped_file", "page"),
    "nr_file_pages": ("file", "total_cache", "page"),
    "nr_dirty": ("file_dirty", "total_dirty", "page"),
    "nr_writeback": ("file_writeback", "total_writeback", "page"),
    "nr_shmem": ("shmem", "total_shmem", "page"),
    "nr_swapcached": ("swapcached", "", "page"),
    "nr_page_table_pages": ("pagetables", "", "page"),
    "nr_sec_page_table_pages": ("sec_pagetables", "", "page"),
    "nr_kernel_stack": ("kernel_stack", "", "kib"),
    "nr_anon_transparent_hugepages": ("anon_thp", "total_rss_huge", "thp"),
    "nr_shmem_hugepages": ("shmem_thp", "", "thp"),
    "nr_file_hugepages": ("file_thp", "", "thp"),
}
#: Not in memory.stat under the same name; the cgroup has it under another.
_V1_COUNTERS = {
    "pgpgin": "total_pgpgin",
    "pgpgout": "total_pgpgout",
    "pgfault": "total_pgfault",
    "pgmajfault": "total_pgmajfault",
}
THP_SIZE = 2 * 1024 * 1024


@dataclass
class VmstatHistory:
    """The counters last shown, per container (mutable, owned by the caller)."""

    counters: dict[bytes, int] = field(default_factory=dict)


def _gauge(stat: Mapping[str, int], version: int, name: str, page_size: int) -> int:
    v2, v1, unit = GAUGES[name]
    key = v2 if version == 2 else v1
    value = stat.get(key, 0) if key else 0
    if unit == "kib":
        return value // 1024
    return value // (THP_SIZE if unit == "thp" else page_size)


def _counter(stat: Mapping[str, int], version: int, name: str) -> int:
    if version == 1:
        return stat.get(_V1_COUNTERS.get(name, ""), 0)
    return stat.get(name, 0)


def render_vmstat(
    host: bytes,
    stat: Mapping[str, int],
    version: int,
    free_bytes: int,
    history: VmstatHistory,
    page_size: int = 4096,
) -> bytes:
    """``host``: the host's /proc/vmstat; ``stat``: the cgroup's memory.stat (parsed);
    ``free_bytes``: the container's MemFree."""
    out = []
    for line in host.splitlines():
        name_b, _, _ = line.partition(b" ")
        name = name_b.decode()
        if name == "nr_free_pages":
            value = free_bytes // page_size
        elif name in GAUGES:
            value = _gauge(stat, version, name, page_size)
        else:
            value = max(_counter(stat, version, name), history.counters.get(name_b, 0))
            history.counters[name_b] = value
        out.append(b"%s %d\n" % (name_b, value))
    return b"".join(out)
