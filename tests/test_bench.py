"""`python -m bench --quick` works end to end: a table with every row, and nothing left behind.

No timing is asserted (this machine is shared; the figures are for the README, not for CI).
The runner's own leak check covers shims, shim sockets, mounts, state dirs and FUSE
connections of its containers; this test additionally checks from the outside that its work
dir and private containerd dir are gone and that no process or mount still refers to them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import mount_points, process_cmdlines

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e

#: metric prefix → rows expected in --quick mode (view: one pair of rows per view file;
#: starvation: ours vs io.containerd.runc.v2 + lxcfs, idle and loaded, p50 and p99).
EXPECTED = [
    ("lifecycle", "ctr run --rm /bin/true"),
    ("lifecycle", "shim start → address printed"),
    ("lifecycle", "address → Create done"),
    ("lifecycle", "Create → Start done"),
    ("lifecycle", "exit → Wait+Delete done"),
    ("view", "/proc/meminfo open+read+close"),
    ("view", "/proc/meminfo open+read+close, 8 readers"),
    ("freshness", "/proc/loadavg reads older than their reader"),
    ("freshness", "/proc/loadavg worst stale read"),
    ("freshness", "/proc/loadavg worst stale read, ms"),
    ("footprint", "shim RSS per container, 1 running"),
    ("footprint", "shim PSS per container, 3 running"),
    ("density", "10 containers: total"),
    ("sysinfo", "sysinfo(2) round trip"),
    ("sysinfo", "getppid(2), rule on (no profile)"),
    ("sysinfo", "getppid(2), rule on (--seccomp)"),
    ("sysinfo", "ctr run --rm /bin/true, all on"),
    ("starvation", "State p99, idle"),
    ("starvation", "State p99, 8 readers in the pod"),
    ("starvation", "Exec p99, 8 readers in the pod"),
    ("starvation", "Start (runc exec) p99, 8 readers in the pod"),
    ("starvation", "Kill p99, 8 readers in the pod"),
    ("starvation", "Kill → TaskExit at containerd p99, 8 readers in the pod"),
    ("starvation", "Kill → Wait returns p99, 8 readers in the pod"),
]
#: benches with no reference to compare with (see bench/freshness.py: lxcfs's last pid)
WITHOUT_REFERENCE = {"freshness"}


def test_bench_quick_runs_all_and_leaks_nothing() -> None:
    if os.geteuid() != 0:
        pytest.fail("the bench needs root: ./install.sh --test as root", pytrace=False)
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"
    assert r.returncode == 0, report
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in r.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| bench ")
    ]
    for bench, metric in EXPECTED:
        match = [row for row in rows if row[0] == bench and row[1].strip().startswith(metric)]
        assert match, f"no row {bench}/{metric!r}\n{report}"
        ours, ref, ratio = match[0][2], match[0][3], match[0][5]
        figures = (ours,) if bench in WITHOUT_REFERENCE else (ours, ref, ratio)
        assert "-" not in figures, f"empty figures: {match[0]}\n{report}"
    assert "Left behind: nothing" in r.stdout, report
    assert "FAILED" not in r.stdout, report

    dirs = re.findall(r"(?:workdir|containerd in) (/tmp/\S+?)[:\s]", r.stderr)
    assert len(dirs) == 2, f"runner no longer reports its dirs\n{report}"
    for d in dirs:
        assert not os.path.exists(d), f"{d} left behind"
        assert not [m for m in mount_points() if m.startswith(d)], f"mounts under {d} left"
        procs = [
            " ".join(argv)
            for pid, argv in process_cmdlines().items()
            if pid != os.getpid() and any(d in a for a in argv)
        ]
        assert not procs, f"processes referring to {d} left: {procs}"
