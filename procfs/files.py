"""The virtual files a container can get, and how each is produced.

A producer gathers its inputs (host file + cgroup snapshot: a few small synchronous reads) and
hands them to a pure renderer. Adding a file = a renderer + a reader + one entry in
:data:`PRODUCERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from procfs.cgroups import CgroupRef
from procfs.readers import read_memory
from procfs.renderers import render_meminfo

#: Where host files are read from (overridable for tests).
HOST_PROC = Path("/proc")

Producer = Callable[[CgroupRef | None], bytes]


def produce_meminfo(ref: CgroupRef | None) -> bytes:
    """Fresh host /proc/meminfo, virtualized if the container's cgroup is known."""
    host = (HOST_PROC / "meminfo").read_bytes()
    if ref is None:
        return host
    return render_meminfo(host, read_memory(ref))


#: Container path → producer. Only these paths may be requested in ``View.add``.
PRODUCERS: dict[str, Producer] = {
    "/proc/meminfo": produce_meminfo,
}
