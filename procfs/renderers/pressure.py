"""/proc/pressure/{cpu,memory,io} for a container: its cgroup2 ``<resource>.pressure``.

Both files share the kernel's format (``some``/``full`` lines of avg10/avg60/avg300/total), so
the cgroup's lines are shown in the host file's shape: a line the host prints but the cgroup
does not (``full`` in cpu.pressure before Linux 5.13) is shown as zeros.
"""

from __future__ import annotations

_ZERO = b"avg10=0.00 avg60=0.00 avg300=0.00 total=0"


def render_pressure(host: bytes, cgroup: bytes) -> bytes:
    ours = {}
    for line in cgroup.splitlines():
        kind, _, rest = line.partition(b" ")
        if rest:
            ours[kind] = rest
    out = []
    for line in host.splitlines():
        kind, _, _ = line.partition(b" ")
        out.append(b"%s %s\n" % (kind, ours.get(kind, _ZERO)))
    return b"".join(out)
