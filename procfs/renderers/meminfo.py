"""/proc/meminfo for a container, following lxcfs' rules (procfs-views.md §4, §5).

Host lines are walked in order: keys derived from the cgroup are replaced, every other line
(KernelStack, CommitLimit, HugePages_*, DirectMap*...) passes through unchanged, so the output
has the host's shape and readers that expect a given key set keep working.
"""

from __future__ import annotations

from collections.abc import Mapping

from procfs.snapshot import MemorySnapshot

KIB = 1024


def parse_meminfo(host: bytes) -> dict[str, int]:
    """``Key:   value kB`` lines → {key: value}, as printed (kB for most keys)."""
    out: dict[str, int] = {}
    for line in host.splitlines():
        key, sep, rest = line.partition(b":")
        fields = rest.split()
        if sep and fields:
            try:
                out[key.decode()] = int(fields[0])
            except ValueError:
                continue
    return out


def format_kb(key: str, kb: int) -> bytes:
    """One line in the kernel's layout: label padded to 16 columns, value right-aligned in 8."""
    return f"{key + ':':<15} {kb:>8} kB\n".encode()


def memory_values(host: Mapping[str, int], snap: MemorySnapshot) -> dict[str, int]:
    """The kB values that replace host lines, computed from a limited cgroup's snapshot."""
    assert snap.limit is not None
    st = snap.stat
    total = min(snap.limit // KIB, host.get("MemTotal", snap.limit // KIB))
    usage = snap.usage // KIB
    free = max(total - usage, 0)
    reclaimable = (st.active_file + st.inactive_file + st.slab_reclaimable) // KIB
    available = min(max(free + reclaimable, 0), total)
    values = {
        "MemTotal": total,
        "MemFree": free,
        "MemAvailable": available,
        "Buffers": 0,
        "Cached": st.cache // KIB,
        "SwapCached": 0,
        "Active": (st.active_anon + st.active_file) // KIB,
        "Inactive": (st.inactive_anon + st.inactive_file) // KIB,
        "Active(anon)": st.active_anon // KIB,
        "Inactive(anon)": st.inactive_anon // KIB,
        "Active(file)": st.active_file // KIB,
        "Inactive(file)": st.inactive_file // KIB,
        "Unevictable": st.unevictable // KIB,
        "Dirty": st.dirty // KIB,
        "Writeback": st.writeback // KIB,
        "AnonPages": max(st.active_anon + st.inactive_anon - st.shmem, 0) // KIB,
        "Mapped": st.mapped_file // KIB,
        "Shmem": st.shmem // KIB,
        "Slab": st.slab // KIB,
        "SReclaimable": st.slab_reclaimable // KIB,
        "SUnreclaim": st.slab_unreclaimable // KIB,
        "AnonHugePages": st.anon_huge // KIB,
        "ShmemHugePages": st.shmem_huge // KIB,
        "ShmemPmdMapped": 0,
        "FileHugePages": st.file_huge // KIB,
        "FilePmdMapped": 0,
        "Zswap": st.zswap // KIB,
        "Zswapped": st.zswapped // KIB,
    }
    values.update(swap_values(host, snap))
    return values


def swap_values(host: Mapping[str, int], snap: MemorySnapshot) -> dict[str, int]:
    """SwapTotal/SwapFree in kB: the cgroup's swap allowance, never above the host's swap.

    No swap accounting → 0/0 (as lxcfs); swappiness 0 → only what is already swapped.
    """
    if not snap.swap_accounted:
        return {"SwapTotal": 0, "SwapFree": 0}
    host_total = host.get("SwapTotal", 0)
    used = snap.swap_usage // KIB
    total = host_total if snap.swap_limit is None else min(snap.swap_limit // KIB, host_total)
    if snap.swappiness == 0:
        total = min(used, host_total)
    return {"SwapTotal": total, "SwapFree": max(total - used, 0)}


def render_meminfo(host_meminfo: bytes, snap: MemorySnapshot) -> bytes:
    """Container /proc/meminfo. Without a memory limit anywhere the host file is returned as is:
    the container may use all of the host's memory, and mixing cgroup usage with host totals
    would show other cgroups' memory as free."""
    if snap.limit is None:
        return host_meminfo
    lines = host_meminfo.splitlines(keepends=True)
    # Only MemTotal and SwapTotal are taken from the host (memory_values, swap_values): one
    # pass over bytes, no full parse -- this runs on every open of the file.
    host: dict[str, int] = {}
    for line in lines:
        if line.startswith((b"MemTotal:", b"SwapTotal:")):
            host.update(parse_meminfo(line))
    values = {k.encode(): v for k, v in memory_values(host, snap).items()}
    out: list[bytes] = []
    for line in lines:
        key = line.partition(b":")[0]
        kb = values.get(key)
        # == format_kb(key, kb), in bytes
        out.append(line if kb is None else b"%-15s %8d kB\n" % (key + b":", kb))
    return b"".join(out)
