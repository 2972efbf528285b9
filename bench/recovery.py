"""Recovery of the /proc view after its FUSE connection is aborted, as a container sees it.

One lxcfs-runtime container (busybox `sleep`, 256 MiB). Inside it (nsenter into its mount
and PID namespaces), bench/poller.c (`vpoll`, static) reads /proc/meminfo every 1 ms and
classifies each read: the container's MemTotal line (ok), another readable content (the
container's own procfs file, i.e. the host's numbers: "host"), or an error / empty read
("fail", e.g. `Transport endpoint is not connected`). Meanwhile the bench aborts the view's
FUSE connection (`echo 1 > /sys/fs/fuse/connections/N/abort`) 20 times, 0.4 s apart, and the
shim mounts a new session and re-binds it in the container.

Reported: the time each abort left the file unreadable (first non-ok read to the next ok
read, in the poller's own clock; p50 and max over the aborts) and the number of host-valued
reads over the whole run (must be 0).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import LXCFS_RUNTIME, Env, Row, median, progress
from bench.view import start_container

ABORTS = 20
SPACING_S = 0.4
INTERVAL_US = 1000
FUSECTL = "/sys/fs/fuse/connections"


def fuse_conn_of(pid: int, target: str) -> str:
    """fusectl connection (minor device number) of the FUSE mount at ``target`` in pid's ns."""
    found = ""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        f = line.split()
        if f[4] == target and " - fuse" in line:
            found = f[2].split(":")[1]
    if not found:
        raise LookupError(f"no FUSE mount at {target} in {pid}")
    return found


@contextlib.contextmanager
def fusectl():
    """/sys/fs/fuse/connections, mounted privately for the run if the host has not."""
    mounted = any(
        ln.split()[4] == FUSECTL for ln in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    if mounted:
        yield FUSECTL
        return
    mnt = tempfile.mkdtemp(prefix="fusectl-")
    subprocess.run(["mount", "-t", "fusectl", "fusectl", mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=False)
        Path(mnt).rmdir()


def outages(events: list[tuple[int, str]]) -> tuple[list[float], int]:
    """(ms unreadable per outage, outages that showed host values) from vpoll's changes."""
    spans: list[float] = []
    host_spans = 0
    start: int | None = None
    saw_host = False
    for ns, cls in events:
        if cls != "ok" and start is None:
            start, saw_host = ns, False
        if cls == "host":
            saw_host = True
        if cls == "ok" and start is not None:
            spans.append((ns - start) / 1e6)
            host_spans += saw_host
            start = None
    return spans, host_spans


def bench(env: Env) -> list[Row]:
    aborts = 5 if env.quick else ABORTS
    cid, pid = start_container(env, LXCFS_RUNTIME, "view-recovery")
    try:
        first = subprocess.run(
            ["nsenter", "-t", str(pid), "-m", "-p", "-r", "-w", "/bin/head", "-1", "/proc/meminfo"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.rstrip("\n")
        if "MemTotal" not in first:
            raise RuntimeError(f"no MemTotal line in the view: {first!r}")
        duration = 1.0 + aborts * SPACING_S + 1.0
        poller = subprocess.Popen(
            [
                "nsenter",
                "-t",
                str(pid),
                "-m",
                "-p",
                "-r",
                "-w",
                "/bin/vpoll",
                "/proc/meminfo",
                first,
                str(duration),
                str(INTERVAL_US),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with fusectl() as ctl:
            time.sleep(1.0)
            for i in range(aborts):
                conn = fuse_conn_of(pid, "/proc/meminfo")
                Path(f"{ctl}/{conn}/abort").write_text("1")
                time.sleep(SPACING_S)
                progress(f"recovery: abort {i + 1}/{aborts}")
        out, err = poller.communicate(timeout=duration + 30)
        if poller.returncode != 0:
            raise RuntimeError(f"vpoll -> {poller.returncode}: {err}")
    finally:
        env.remove_many([cid])
    lines = out.split("\n")
    events = [(int(x.split()[0]), x.split()[1]) for x in lines if x and not x.startswith("end")]
    end = next(x for x in lines if x.startswith("end")).split()
    reads, _ok, host, fail = map(int, end[1:])
    spans, host_spans = outages(events)
    note = (
        f"{aborts} aborts, {len(spans)} outages seen, {reads} reads at 1 ms: {fail} failed, "
        f"{host} host-valued ({host_spans} outages with host values)"
    )
    return [
        Row(
            "view",
            "recovery after FUSE abort: unreadable, p50",
            median(spans) if spans else 0.0,
            None,
            "ms",
            "<= 10 ms",
            note,
        ),
        Row(
            "view",
            "recovery after FUSE abort: unreadable, max",
            max(spans, default=0.0),
            None,
            "ms",
            "<= 10 ms",
            note,
        ),
        Row(
            "view",
            "recovery after FUSE abort: host-valued reads",
            float(host),
            None,
            "reads",
            "0",
            note,
        ),
    ]
