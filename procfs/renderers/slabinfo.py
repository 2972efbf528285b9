"""/proc/slabinfo for a container: the memory cgroup's own ``memory.kmem.slabinfo`` (v1) when
the kernel fills it; otherwise the host file's header without any host slab rows.

lxcfs copies the cgroup file (empty on kernels ≥ 5.9, so readers get an empty file) and falls
back to the *host* file when it cannot open it -- host kernel details a container should not
see, from a file the host only lets root read. Header-only keeps the format valid for slabtop.
"""

from __future__ import annotations


def render_slabinfo(host: bytes, cgroup: bytes | None) -> bytes:
    if cgroup and cgroup.strip():
        return cgroup
    lines = host.splitlines(keepends=True)
    return b"".join(line for line in lines[:2] if line.startswith((b"slabinfo", b"#")))
