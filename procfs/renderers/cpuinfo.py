"""/proc/cpuinfo and /sys/devices/system/cpu/online for a container (procfs-views.md §6, §11).

Only the visible CPUs (cpuset, cut by the CFS quota: :meth:`CpuSnapshot.visible`) are shown,
renumbered from 0 so cpuinfo, /proc/stat and cpu/online agree with each other.

Formats handled: paragraph-per-CPU files that start each CPU with ``processor : N`` (x86,
arm64, ppc64le, riscv, mips, old 32-bit arm with a ``Processor :`` header line) -- global
lines before the first CPU and after the last (ppc64 ``timebase``/``platform``, arm
``Hardware``) are kept whichever CPUs are shown (lxcfs drops the trailer when the host's last
CPU is hidden); and s390x, whose CPUs are ``processor N: ...`` lines plus ``cpu number : N``
paragraphs under a ``# processors`` count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from procfs.cpuset import format_cpuset

_PROCESSOR = re.compile(rb"^processor\s*:\s*(\d+)\s*$")
_S390_PROCESSOR = re.compile(rb"^processor (\d+):(.*)$", re.S)
_S390_CPU_NUMBER = re.compile(rb"^cpu number\s*:\s*(\d+)\s*$")
_S390_COUNT = re.compile(rb"^# processors\s*:")


def _value_col(line: bytes) -> bytes:
    """The ``label<tabs>: `` prefix of ``line``, so renumbered lines keep the host layout."""
    return line[: line.index(b":") + 1]


def render_cpuinfo(host: bytes, visible: Sequence[int]) -> bytes:
    """Host cpuinfo reduced to ``visible`` (host CPU ids, in display order)."""
    index = {cpu: i for i, cpu in enumerate(visible)}
    lines = host.splitlines(keepends=True)
    if lines and lines[0].startswith(b"vendor_id") and b"IBM/S390" in lines[0]:
        return _render_s390(lines, index)
    out: list[bytes] = []
    keep = True  # inside a CPU block: whether it is shown; outside: True
    for line in lines:
        if not line.strip():
            if keep:
                out.append(line)
            keep = True
            continue
        m = _PROCESSOR.match(line.rstrip(b"\n"))
        if m:
            cpu = int(m.group(1))
            keep = cpu in index
            if keep:
                out.append(_value_col(line) + b" %d\n" % index[cpu])
            continue
        if keep:
            out.append(line)
    return b"".join(out)


def _render_s390(lines: list[bytes], index: dict[int, int]) -> bytes:
    out: list[bytes] = []
    keep = True
    for line in lines:
        bare = line.rstrip(b"\n")
        if not bare.strip():
            if keep:
                out.append(line)
            keep = True
            continue
        if _S390_COUNT.match(bare):
            out.append(_value_col(line) + b" %d\n" % len(index))
            continue
        m = _S390_PROCESSOR.match(bare)
        if m:
            cpu = int(m.group(1))
            if cpu in index:
                out.append(b"processor %d:%s\n" % (index[cpu], m.group(2)))
            continue
        m = _S390_CPU_NUMBER.match(bare)
        if m:
            cpu = int(m.group(1))
            keep = cpu in index
            if keep:
                out.append(_value_col(line) + b" %d\n" % index[cpu])
            continue
        if keep:
            out.append(line)
    return b"".join(out)


def render_cpu_online(visible: Sequence[int]) -> bytes:
    """``0-{n-1}``: the renumbered CPUs, like the renumbered cpuinfo (glibc's get_nprocs,
    Python's os.cpu_count and nginx ``worker_processes auto`` read this file)."""
    return (format_cpuset(range(len(visible))) + "\n").encode()
