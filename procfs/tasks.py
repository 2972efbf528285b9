"""The container's threads, as the host's /proc sees them: input of loadavg and /proc/stat.

Threads come from the cgroup (v1 ``tasks``, v2 ``cgroup.threads``) and its descendants, so
processes in nested cgroups (systemd in a container, pods) count. Threads that exit while
being scanned are skipped: a scan is a best-effort snapshot, like the kernel's own counters.
"""

from __future__ import annotations

import os
from pathlib import Path

from procfs import fastio
from procfs.cgroups import CgroupRef
from procfs.snapshot import TaskCounts

HOST_PROC = Path("/proc")
#: Depth limit for the descendant walk (lxcfs stops at 3; nested runtimes go deeper).
MAX_DEPTH = 8


def cgroup_threads(ref: CgroupRef, controller: str = "cpu") -> list[int]:
    """Host tids of every thread in the container's cgroup and its descendants."""
    top = ref.dir(controller)
    if top is None:
        raise LookupError(f"no {controller} cgroup known for this container")
    name = "tasks" if ref.version(controller) == 1 else "cgroup.threads"
    tids: list[int] = []
    stack: list[tuple[str | Path, int]] = [(top, 0)]
    while stack:
        d, depth = stack.pop()
        try:
            tids.extend(int(t) for t in fastio.read_bytes(f"{d}/{name}").split())
            if depth < MAX_DEPTH:
                with os.scandir(d) as it:
                    stack.extend((e.path, depth + 1) for e in it if e.is_dir())
        except FileNotFoundError:
            if d == top:
                raise
    return tids


def thread_stat(tid: int, proc: Path = HOST_PROC) -> tuple[str, int] | None:
    """Scheduler state letter (``R``, ``S``, ``D``...) and start time (clock ticks since
    boot), or None if the thread is gone."""
    try:
        data = fastio.read_bytes(f"{proc}/{tid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: the state (field 3) follows the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return chr(fields[0][0]), int(fields[19])


def _status(tid: int, proc: Path) -> dict[str, str]:
    out = {}
    try:
        text = fastio.read_text(f"{proc}/{tid}/status")
    except (FileNotFoundError, ProcessLookupError):
        return out
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def scan_tasks(
    ref: CgroupRef, *, ctxt: bool = False, caller: int | None = None, proc: Path = HOST_PROC
) -> TaskCounts:
    """Count the container's threads by state; ``ctxt`` also sums context switches (costs a
    status read per thread, so only /proc/stat asks for it). ``caller`` (a tid waiting for
    this very FUSE request, so in D state) counts as running."""
    tids = cgroup_threads(ref)
    threads = running = blocked = switches = 0
    newest = (-1, -1)  # (start time, tid) of the youngest thread
    newest_status: dict[str, str] | None = None  # its status, when read for ctxt anyway
    for tid in tids:
        st = thread_stat(tid, proc)
        if st is None:
            continue
        state = "R" if tid == caller else st[0]
        threads += 1
        running += state == "R"
        blocked += state == "D"
        younger = (st[1], tid) > newest
        if younger:
            newest = (st[1], tid)
        if ctxt:
            status = _status(tid, proc)
            switches += int(status.get("voluntary_ctxt_switches", 0))
            switches += int(status.get("nonvoluntary_ctxt_switches", 0))
            if younger:
                newest_status = status
    # The last pid is the youngest thread's, in the container's namespace: not the highest
    # host tid, which after the host's pid numbers wrap is an old thread's for good.
    last_pid = 0
    if newest[1] >= 0:
        if newest_status is None:
            newest_status = _status(newest[1], proc)
        nspid = newest_status.get("NSpid", "").split()
        last_pid = int(nspid[-1]) if nspid else 0
    return TaskCounts(threads, running, blocked, last_pid, switches)


def start_ticks(pid: int, proc: Path = HOST_PROC) -> int:
    """Field 22 of /proc/<pid>/stat: start time in clock ticks since host boot."""
    data = fastio.read_bytes(f"{proc}/{pid}/stat")
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19])
