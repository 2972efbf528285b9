"""/proc/diskstats for a container (procfs-views.md §10): the host's device list, counters from
the container's cgroup (v1 blkio, v2 io.stat -- lxcfs shows the host file on v2).

Only devices the container did IO on are listed (lxcfs omits all-zero lines too). Columns the
cgroup cannot tell (in flight, weighted time, flushes; merges and times on v2) are 0. Each line
has as many fields as the host's, so parsers written for this kernel keep working.
"""

from __future__ import annotations

from collections.abc import Iterable

from procfs.snapshot import DiskIO

SECTOR = 512


def disk_fields(io: DiskIO) -> list[int]:
    """The kernel's 17 counters after the device name (Documentation/admin-guide/iostats)."""
    return [
        io.reads,
        io.read_merged,
        io.read_bytes // SECTOR,
        io.read_ms,
        io.writes,
        io.write_merged,
        io.write_bytes // SECTOR,
        io.write_ms,
        0,
        io.io_ms,
        0,
        io.discards,
        io.discard_merged,
        io.discard_bytes // SECTOR,
        io.discard_ms,
        0,
        0,
    ]


def render_diskstats(host: bytes, devices: Iterable[DiskIO]) -> bytes:
    by_dev = {(d.major, d.minor): d for d in devices}
    out: list[bytes] = []
    for line in host.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        io = by_dev.get((int(fields[0]), int(fields[1])))
        if io is None:
            continue
        values = disk_fields(io)[: len(fields) - 3]
        if not any(values):
            continue
        out.append(
            b"%4d %7d %s " % (int(fields[0]), int(fields[1]), fields[2])
            + b" ".join(b"%d" % v for v in values)
            + b"\n"
        )
    return b"".join(out)
