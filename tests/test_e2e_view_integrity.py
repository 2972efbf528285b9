"""Every read of a view file is one whole rendering, whoever reads it and however.

Inside a real container (lxcfs runtime, busybox), 8 concurrent reader loops read the view's
files with every kind of reader -- busybox ``cat`` (sendfile, i.e. the kernel's splice path),
``dd bs=1`` (one FUSE read per byte), ``head -c``, a shell ``read`` loop, ``stat`` then ``cat``
(sizing and reading by different processes) -- while the renderings change length under them:
every reader is a new pid (last pid and ``processes`` gain digits), and the concurrency makes
the running/total thread counts jump. Each read must be non-empty, newline-terminated, free of
NUL bytes and shaped like the file (a cut last line or a padded page shows up at once).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import re
import subprocess
import time
from collections import Counter

import pytest
from harness import LXCFS_RUNTIME

pytestmark = pytest.mark.e2e

LIMIT = 256 * 1024 * 1024
READERS = 8
FILES = [
    "/proc/loadavg",
    "/proc/stat",
    "/proc/uptime",
    "/proc/meminfo",
    "/proc/swaps",
    "/proc/cpuinfo",
    "/proc/vmstat",
    "/sys/devices/system/cpu/online",
]
# (/proc/diskstats is legitimately empty in a container that did no block IO.)
#: Reader kinds; {f} is the file. Each prints the file's bytes exactly as read.
METHODS = {
    "cat": "cat {f}",
    "dd1": "dd if={f} bs=1 2>/dev/null",
    "head": "head -c 1000000 {f}",
    "readloop": 'while IFS= read -r l; do echo "$l"; done < {f}; [ -n "$l" ] && printf %s "$l"',
    "statcat": "stat -c %s {f} >/dev/null; cat {f}",
}
#: dd bs=1 costs one FUSE round trip per byte: only on the short files.
SHORT = {"/proc/loadavg", "/proc/uptime", "/proc/swaps", "/sys/devices/system/cpu/online"}
BEGIN, END = "@@B ", "@@E"

_SHAPES = {
    "/proc/loadavg": re.compile(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n"),
    "/proc/uptime": re.compile(r"\d+\.\d\d \d+\.\d\d\n"),
    "/sys/devices/system/cpu/online": re.compile(r"[0-9,-]+\n"),
}


def _script(rounds: int) -> str:
    """One reader loop: every file by every method, ``rounds`` times."""
    steps = []
    for f in FILES:
        for name, cmd in METHODS.items():
            if name == "dd1" and f not in SHORT:
                continue
            steps.append(f"echo '{BEGIN}{f} {name}'; {cmd.format(f=f)}; echo '{END}'")
    body = "; ".join(steps)
    return f"i=0; while [ $i -lt {rounds} ]; do {body}; i=$((i+1)); done"


def _reads(out: str) -> list[tuple[str, str, str]]:
    """(file, method, bytes read) for every read in a reader's output."""
    reads = []
    for chunk in out.split(BEGIN)[1:]:
        header, _, rest = chunk.partition("\n")
        f, method = header.split()
        assert rest.endswith(END + "\n"), f"{f} {method}: marker lost: {rest[-200:]!r}"
        reads.append((f, method, rest[: -len(END) - 1]))
    return reads


def _keys(text: str) -> list[str]:
    return [ln.split(":")[0].split()[0] if ln.split() else "" for ln in text.split("\n")]


def _problem(f: str, text: str, reference: str) -> str | None:
    if not text:
        return "empty"
    if not text.endswith("\n"):
        return "no final newline"
    if "\0" in text:
        return "NUL bytes"
    shape = _SHAPES.get(f)
    if shape is not None:
        return None if shape.fullmatch(text) else "not the file's shape"
    if _keys(text) != _keys(reference):
        return "lines differ from a whole rendering"
    return None


def _exec_popen(containerd, cid: str, eid: str, script: str) -> subprocess.Popen:
    cmd = [
        containerd.ctr_bin,
        "--address",
        containerd.address,
        "--namespace",
        containerd.namespace,
        "task",
        "exec",
        "--exec-id",
        eid,
        cid,
        "/bin/sh",
        "-c",
        script,
    ]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=containerd.env,
    )


def test_every_read_is_one_whole_rendering(containerd, busybox_rootfs, cid):
    rounds = int(os.environ.get("VIEW_INTEGRITY_ROUNDS", "25"))
    r = containerd.run_detached(
        LXCFS_RUNTIME,
        busybox_rootfs,
        cid,
        "/bin/sleep",
        "1000",
        ctr_args=("--memory-limit", str(LIMIT), "--cpus", "1"),
    )
    assert r.returncode == 0, r.stderr
    try:
        assert containerd.wait_status(cid, "RUNNING", timeout=20), containerd.tasks()
        ref = containerd.ctr(
            "task",
            "exec",
            "--exec-id",
            "ref",
            cid,
            "/bin/sh",
            "-c",
            "; ".join(f"echo '{BEGIN}{f} ref'; cat {f}; echo '{END}'" for f in FILES),
            timeout=30,
        )
        assert ref.returncode == 0, ref.stderr
        reference = {f: text for f, _, text in _reads(ref.stdout)}

        procs = [_exec_popen(containerd, cid, f"rd{i}", _script(rounds)) for i in range(READERS)]
        # drained together: a reader whose output nobody reads blocks in mid-sendfile (legit,
        # but then it holds its file's length for up to view.GRACE, freezing the others)
        with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
            outs = list(pool.map(lambda p: p.communicate(timeout=900), procs))
    finally:
        containerd.force_remove(cid)

    bad: Counter[tuple[str, str, str]] = Counter()
    count: Counter[str] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    for (stdout, stderr), p in zip(outs, procs, strict=True):
        assert p.returncode == 0, stderr
        for f, method, text in _reads(stdout):
            count[f] += 1
            why = _problem(f, text, reference[f])
            if why:
                bad[(f, method, why)] += 1
                examples.setdefault((f, method, why), text[-120:])
    print("reads per file:", dict(count))
    assert not bad, "cut/empty/garbled reads: " + "; ".join(
        f"{f} {m} {why} x{n} (e.g. {examples[(f, m, why)]!r})"
        for (f, m, why), n in bad.most_common()
    )
    assert min(count.values()) >= READERS * rounds * 3


# --------------------------------------------------------------------------- recovery


FUSECTL = "/sys/fs/fuse/connections"


def _fuse_conn_of(pid: int, target: str) -> str:
    found = ""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target and " - fuse" in line:
                found = fields[2].split(":")[1]
    return found


def test_recovery_never_shows_host_values(containerd, busybox_rootfs, cid, tmp_path):
    """Abort the view's FUSE connection 5 times under a reader polling every 1 ms: reads
    fail for a moment, then show the container's values again -- never the host's (the
    container's own procfs file under the bind)."""
    poller = tmp_path / "vpoll"
    src = os.path.join(os.path.dirname(__file__), "..", "bench", "poller.c")
    subprocess.run(["gcc", "-static", "-O2", "-o", str(poller), src], check=True)
    r = containerd.run_detached(
        LXCFS_RUNTIME,
        busybox_rootfs,
        cid,
        "/bin/sleep",
        "1000",
        ctr_args=("--memory-limit", str(LIMIT)),
    )
    assert r.returncode == 0, r.stderr
    ctl = FUSECTL
    own_ctl = not os.path.exists(f"{FUSECTL}/") or not os.listdir(FUSECTL)
    if own_ctl:
        ctl = str(tmp_path / "fusectl")
        os.mkdir(ctl)
        subprocess.run(["mount", "-t", "fusectl", "fusectl", ctl], check=True)
    try:
        assert containerd.wait_status(cid, "RUNNING", timeout=20), containerd.tasks()
        pid = containerd.tasks()[cid][0]
        path = f"/proc/{pid}/root/proc/meminfo"
        with open(path) as f:
            first = f.readline().rstrip("\n")
        assert first.split()[1] == str(LIMIT // 1024), first
        poll = subprocess.Popen(
            [str(poller), path, first, "5", "1000"],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        conns = [_fuse_conn_of(pid, "/proc/meminfo")]
        for _ in range(5):
            with open(f"{ctl}/{conns[-1]}/abort", "w") as f:
                f.write("1")
            time.sleep(0.6)
            conns.append(_fuse_conn_of(pid, "/proc/meminfo"))
        out, err = poll.communicate(timeout=30)
    finally:
        containerd.force_remove(cid)
        if own_ctl:
            subprocess.run(["umount", ctl], check=False)
    assert poll.returncode == 0, err
    classes = [ln.split()[1] for ln in out.splitlines() if not ln.startswith("end")]
    *_, host, fail = out.splitlines()[-1].split()
    print(out)
    assert int(host) == 0, f"host values shown through:\n{out}"
    # every abort was recovered from: the bind serves a new FUSE connection each time
    assert all(conns) and all(a != b for a, b in itertools.pairwise(conns)), conns
    # the poller saw the outages (a recovery faster than its 1 ms period can go unseen)
    assert int(fail) > 0, "no abort seen by the poller"
    assert classes[-1] == "ok", out
