"""/proc/swaps for a container (procfs-views.md §5): one virtual ``none`` device holding the
container's swap allowance (same numbers as its meminfo SwapTotal/SwapFree), header only when
it has none."""

from __future__ import annotations

from procfs.renderers.meminfo import parse_meminfo, swap_values
from procfs.snapshot import MemorySnapshot

HEADER = b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def render_swaps(host_swaps: bytes, host_meminfo: bytes, snap: MemorySnapshot) -> bytes:
    """No memory limit → host file, like meminfo (the container may use the host's swap)."""
    if snap.limit is None:
        return host_swaps
    header = host_swaps.splitlines(keepends=True)[0] if host_swaps else HEADER
    swap = swap_values(parse_meminfo(host_meminfo), snap)
    total, free = swap["SwapTotal"], swap["SwapFree"]
    if total <= 0:
        return header
    return header + b"%-40s%s\t\t%d\t\t%d\t\t0\n" % (b"none", b"virtual", total, total - free)
