"""View freshness under load: how often /proc/loadavg's last pid is older than its reader.

/proc/loadavg ends with the newest pid of the caller's namespace; a reader that starts
(``sh -c 'echo -n "$$ "; exec cat /proc/loadavg'``: the pid is cat's own) and reads a
rendering made after it started sees a last pid at least its own. A smaller one is a stale
read: a rendering shared from before the reader existed (SHARE_WINDOW), or one kept for the
length the kernel holds (the attribute lifetime, a held length). The probe makes PROBES such
reads in the container while BUSY shell loops `cat` the same file as fast as they can (every
cat a new pid, so the length changes under them), and counts the stale reads and how many
pids the worst one lagged, also as time at the probe's pid rate. Reads whose last pid is far
ahead of the reader (pid numbers wrapped) are left out.

(*) No lxcfs reference: lxcfs 5.0.3's last pid is not a pid of the container's namespace
(16113176 in one run, with pid_max 32768), so "older than the reader" means nothing there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import LXCFS_RUNTIME, Env, Row, progress
from bench.view import start_container
from procfs.cgroups import UNIFIED, discover_hierarchies, ref_from_proc

PROBES = 300
BUSY = 8
FILE = "/proc/loadavg"
_NSENTER = ("nsenter", "-m", "-p", "-r", "-w", "-t")


def _cgroup_procs(pid: int) -> set[Path]:
    """The cgroup.procs files of ``pid``'s cgroup in every hierarchy (procfs.cgroups reads
    /proc/<pid>/cgroup and the mounts, as the view does)."""
    ref = ref_from_proc(pid, discover_hierarchies())
    controllers = [*ref.hierarchies.v1, *([UNIFIED] if ref.hierarchies.v2 else [])]
    dirs = {ref.dir(c) for c in controllers}
    out = {d / "cgroup.procs" for d in dirs if d is not None and (d / "cgroup.procs").exists()}
    if not out:
        raise RuntimeError(f"no cgroup of pid {pid} found")
    return out


def _in_container(pid: int, script: str, **kw: Any) -> subprocess.Popen:
    """``/bin/sh -c script`` in the container's namespaces *and cgroups*: our loadavg counts
    the container cgroup's threads, as it would a process started by ``ctr task exec``."""
    procs = _cgroup_procs(pid)

    def join() -> None:  # in the child, before exec: its children inherit the cgroups
        for f in procs:
            f.write_text(str(os.getpid()))

    cmd = [*_NSENTER, str(pid), "/bin/sh", "-c", script]
    return subprocess.Popen(cmd, preexec_fn=join, text=True, **kw)


def _probe(pid: int, probes: int) -> tuple[int, int, int, float]:
    """(stale reads, worst lag in pids, reads counted, pids made per second) with BUSY cat
    loops beside the probe. The pid rate turns a lag in pids into time: a faster view lets
    the loops make more pids per millisecond, so the same age is more pids behind."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    loop = f"while :; do cat {FILE} >/dev/null; done"
    busy = [_in_container(pid, loop, start_new_session=True, **quiet) for _ in range(BUSY)]
    try:
        script = (
            f"i=0; while [ $i -lt {probes} ]; do "
            f"sh -c 'echo -n \"$$ \"; exec cat {FILE}'; i=$((i+1)); done"
        )
        started = time.monotonic()
        probe = _in_container(pid, script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = probe.communicate(timeout=600)
        took = time.monotonic() - started
    finally:
        for p in busy:
            os.killpg(p.pid, signal.SIGKILL)
        for p in busy:
            p.wait(10)
    if probe.returncode != 0:
        raise RuntimeError(f"freshness probe -> {probe.returncode}: {err.strip()}")
    stale = worst = counted = made = 0
    previous = None
    for line in out.splitlines():  # "<reader's pid> <loadavg>"
        fields = line.split()
        if len(fields) != 6:
            raise RuntimeError(f"freshness probe: not a pid and a loadavg: {line!r}")
        own = int(fields[0])
        if previous is not None and own > previous:  # (not across a wrap)
            made += own - previous
        previous = own
        lag = own - int(fields[-1])
        if lag < -16384:  # the namespace's pid numbers wrapped in between
            continue
        counted += 1
        if lag > 0:
            stale += 1
            worst = max(worst, lag)
    return stale, worst, counted, made / took


def bench(env: Env) -> list[Row]:
    probes = 40 if env.quick else PROBES
    cid, pid = start_container(env, LXCFS_RUNTIME, "fresh-ours")
    try:
        stale, worst, counted, rate = _probe(pid, probes)
    finally:
        env.remove_many([cid])
    progress(f"freshness: {stale} stale of {counted}, worst {worst} pids behind, {rate:.0f} pids/s")
    note = (
        f"{BUSY} busy cat loops beside, {counted} reads counted, {rate:.0f} pids/s; "
        "lxcfs: no reference (*)"
    )
    return [
        Row(
            "freshness",
            f"{FILE} reads older than their reader, of {probes}",
            float(stale),
            None,
            "reads",
            "report",
            note,
        ),
        Row(
            "freshness",
            f"{FILE} worst stale read, pids behind",
            float(worst),
            None,
            "pids",
            "report",
            note,
        ),
        Row(
            "freshness",
            f"{FILE} worst stale read, ms (pids at the pid rate)",
            worst / rate * 1e3 if rate else None,
            None,
            "ms",
            "report",
            note,
        ),
    ]
