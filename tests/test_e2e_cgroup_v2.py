"""cgroup v2-only behaviour, through a real containerd, runc and kernel.

Needs a cgroup v2 host: on the (v1 hybrid) development host these are skipped, and
tests/test_guest_cgroup_v2.py runs them inside a Debian 12 guest booted with cgroup v2 only.
Every test reads what the kernel wrote (the container's cgroup files) next to what the view
shows, so a wrong assumption about v2 files shows up as a difference between the two.

With GUEST_CGROUP_DUMP=<dir> the files of each container are copied there (the guest run uses
them to check tests/fixtures/cgroup_v2 against the kernel).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import cgroup_paths
import pytest
from harness import LXCFS_RUNTIME, parse_meminfo

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not cgroup_paths.unified(),
        reason="cgroup v1 host: tests/test_guest_cgroup_v2.py runs these in a cgroup v2 guest",
    ),
]

MiB = 1024 * 1024
SEP = "=====8<====="
DUMPED = (
    "cgroup.controllers",
    "cgroup.events",
    "cpu.max",
    "cpu.stat",
    "cpuset.cpus",
    "cpuset.cpus.effective",
    "io.stat",
    "memory.current",
    "memory.events",
    "memory.high",
    "memory.max",
    "memory.stat",
    "memory.swap.current",
    "memory.swap.events",
    "memory.swap.max",
    "pids.current",
    "pids.max",
)


def _explain(r) -> str:
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


def start(containerd, rootfs, cid, *ctr_args: str, cmd=("/bin/sleep", "1000")) -> int:
    r = containerd.run_detached(LXCFS_RUNTIME, rootfs, cid, *cmd, ctr_args=ctr_args)
    assert r.returncode == 0, _explain(r)
    assert containerd.wait_status(cid, "RUNNING", timeout=30), containerd.tasks()
    return containerd.tasks()[cid][0]


def sh(containerd, cid: str, script: str, timeout: float = 60) -> str:
    eid = f"x{time.monotonic_ns() % 10**9}"
    r = containerd.ctr(
        "task", "exec", "--exec-id", eid, cid, "/bin/sh", "-c", script, timeout=timeout
    )
    assert r.returncode == 0, _explain(r)
    return r.stdout


def files(containerd, cid: str, *paths: str) -> dict[str, str]:
    out = sh(containerd, cid, "; ".join(f"echo '{SEP} {p}'; cat {p}" for p in paths))
    parts = {}
    for chunk in out.split(SEP + " ")[1:]:
        name, _, body = chunk.partition("\n")
        parts[name.strip()] = body
    return parts


def dump(cg: Path, name: str) -> None:
    """Copy what the kernel wrote for this container (GUEST_CGROUP_DUMP), for the fixtures."""
    target = os.environ.get("GUEST_CGROUP_DUMP")
    if not target:
        return
    dest = Path(target) / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in DUMPED:
        with contextlib.suppress(OSError):
            (dest / f).write_text((cg / f).read_text())


def processors(cpuinfo: str) -> list[str]:
    return re.findall(r"^processor\s*:\s*(\d+)$", cpuinfo, re.M)


def expand_cpus(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


@pytest.fixture
def ctr_id(containerd, cid):
    """`cid`, removed again after the test (conftest's `cid` fails a test that leaves a
    detached container behind)."""
    yield cid
    containerd.force_remove(cid)


# --------------------------------------------------------------------------- memory


@pytest.fixture
def swapfile():
    """256 MiB of swap for the machine while the test runs (only where none exists: the
    guest), so memory.swap.max has something to limit."""
    if parse_meminfo(Path("/proc/meminfo").read_text())["SwapTotal"]:
        yield None
        return
    if not os.environ.get("CONTAINERD_SHIM_LXCFS_IN_GUEST"):
        pytest.skip(
            "no swap on this host; the guest run adds a swap file (not done on a shared machine)"
        )
    d = Path(tempfile.mkdtemp(prefix="swap-", dir="/var/tmp"))
    f = d / "swapfile"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={f}", "bs=1M", "count=256", "status=none"], check=True
    )
    f.chmod(0o600)
    subprocess.run(["mkswap", str(f)], check=True, capture_output=True)
    subprocess.run(["swapon", str(f)], check=True)
    try:
        yield f
    finally:
        subprocess.run(["swapoff", str(f)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def test_memory_max_high_and_swap_max(containerd, busybox_rootfs, ctr_id, swapfile):
    """memory.max → MemTotal; memory.swap.max → SwapTotal (capped by the host's swap);
    memory.high is a throttling threshold, not a limit: MemTotal stays memory.max (as lxcfs)."""
    cid = ctr_id
    pid = start(containerd, busybox_rootfs, cid, "--memory-limit", str(256 * MiB))
    cg = cgroup_paths.cgroup_dir(pid, "memory")
    assert (cg / "memory.max").read_text() == f"{256 * MiB}\n"
    host_swap = parse_meminfo(Path("/proc/meminfo").read_text())["SwapTotal"]
    mem = parse_meminfo(files(containerd, cid, "/proc/meminfo")["/proc/meminfo"])
    assert mem["MemTotal"] == 256 * 1024
    # runc leaves memory.swap.max alone when the spec has no swap limit ("max"): host swap
    swap_max = (cg / "memory.swap.max").read_text().strip()
    expect_swap = host_swap if swap_max == "max" else min(int(swap_max) // 1024, host_swap)
    assert mem["SwapTotal"] == expect_swap, (swap_max, host_swap, mem)

    (cg / "memory.swap.max").write_text(str(64 * MiB))
    (cg / "memory.high").write_text(str(128 * MiB))
    dump(cg, "memory-limited")
    view = files(containerd, cid, "/proc/meminfo", "/proc/swaps")
    mem = parse_meminfo(view["/proc/meminfo"])
    assert mem["MemTotal"] == 256 * 1024, "memory.high is not a limit"
    assert mem["SwapTotal"] == min(64 * 1024, host_swap), (host_swap, mem)
    swaps = view["/proc/swaps"].splitlines()
    if host_swap:
        assert len(swaps) == 2 and int(swaps[1].split()[2]) == mem["SwapTotal"], swaps
    else:
        assert len(swaps) == 1, swaps


def test_nested_cgroupfs_path_with_slice_names(containerd, busybox_rootfs, ctr_id):
    """A systemd-style tree created by runc's cgroupfs driver (`ctr run --cgroup`): the view
    takes the smallest memory.max up the tree and the cpuset/quota of the right directory.
    (runc's systemd driver, `slice:prefix:name`, needs a running systemd: not in the guest.)"""
    cid = ctr_id
    top = Path(f"/sys/fs/cgroup/lxcfs-test-{os.getpid()}.slice")
    pod = top / f"lxcfs-test-{os.getpid()}-pod.slice"
    scope = pod / f"cri-containerd-{cid}.scope"
    top.mkdir()
    try:
        # the parent limits what the child may use: 96 MiB < the container's own 256 MiB
        (top / "cgroup.subtree_control").write_text("+memory +cpu +cpuset +io +pids")
        pod.mkdir()
        (pod / "cgroup.subtree_control").write_text("+memory +cpu +cpuset +io +pids")
        (pod / "memory.max").write_text(str(96 * MiB))
        (pod / "cpu.max").write_text("50000 100000")
        cgpath = "/" + str(scope.relative_to("/sys/fs/cgroup"))
        pid = start(
            containerd, busybox_rootfs, cid, "--memory-limit", str(256 * MiB), "--cgroup", cgpath
        )
        assert cgroup_paths.cgroup_dir(pid, "memory") == scope
        assert (scope / "memory.max").read_text() == f"{256 * MiB}\n"
        view = files(
            containerd, cid, "/proc/meminfo", "/proc/cpuinfo", "/sys/devices/system/cpu/online"
        )
        assert parse_meminfo(view["/proc/meminfo"])["MemTotal"] == 96 * 1024
        # the quota on the pod slice limits the container too: 0.5 CPU → 1 processor
        assert processors(view["/proc/cpuinfo"]) == ["0"]
        assert view["/sys/devices/system/cpu/online"] == "0\n"
        containerd.force_remove(cid)
    finally:
        containerd.force_remove(cid)
        for d in (scope, pod, top):
            with contextlib.suppress(OSError):
                d.rmdir()


# --------------------------------------------------------------------------- cpu


def test_cpu_max_and_cpuset_effective(containerd, busybox_rootfs, ctr_id):
    """cpu.max quota → ceil(quota/period) CPUs; the CPUs are cpuset.cpus.effective's
    (renumbered from 0); changes made from outside show on the next read."""
    cid = ctr_id
    ncpu = len(expand_cpus(Path("/sys/fs/cgroup/cpuset.cpus.effective").read_text()))
    pid = start(containerd, busybox_rootfs, cid, "--cpus", "0.5")
    cg = cgroup_paths.cgroup_dir(pid, "cpu")
    assert (cg / "cpu.max").read_text() == "50000 100000\n"
    view = files(containerd, cid, "/proc/cpuinfo", "/sys/devices/system/cpu/online", "/proc/stat")
    assert processors(view["/proc/cpuinfo"]) == ["0"]
    assert view["/sys/devices/system/cpu/online"] == "0\n"
    assert [ln.split()[0] for ln in view["/proc/stat"].splitlines() if ln.startswith("cpu")] == [
        "cpu",
        "cpu0",
    ]
    # no quota: every CPU of cpuset.cpus.effective
    (cg / "cpu.max").write_text("max 100000")
    dump(cg, "cpu-unlimited")
    effective = expand_cpus((cg / "cpuset.cpus.effective").read_text())
    view = files(containerd, cid, "/proc/cpuinfo", "/sys/devices/system/cpu/online")
    assert processors(view["/proc/cpuinfo"]) == [str(i) for i in range(len(effective))]
    assert view["/sys/devices/system/cpu/online"] == (
        f"0-{len(effective) - 1}\n" if len(effective) > 1 else "0\n"
    )
    if ncpu < 2:
        return
    # a 1.5 CPU quota rounds up to 2
    (cg / "cpu.max").write_text("150000 100000")
    assert len(processors(files(containerd, cid, "/proc/cpuinfo")["/proc/cpuinfo"])) == 2
    # restrict the cpuset to the last CPU: one CPU, shown as cpu 0, with that CPU's model line
    last = ncpu - 1
    (cg / "cpuset.cpus").write_text(str(last))
    assert expand_cpus((cg / "cpuset.cpus.effective").read_text()) == [last]
    dump(cg, "cpuset-last")
    view = files(containerd, cid, "/proc/cpuinfo", "/sys/devices/system/cpu/online")
    assert processors(view["/proc/cpuinfo"]) == ["0"]
    assert view["/sys/devices/system/cpu/online"] == "0\n"


def test_cpu_stat_is_proc_stat_time(containerd, busybox_rootfs, ctr_id):
    """/proc/stat's user+system of the container = cpu.stat's user_usec+system_usec (ticks)."""
    cid = ctr_id
    pid = start(containerd, busybox_rootfs, cid, "--cpus", "1")
    cg = cgroup_paths.cgroup_dir(pid, "cpu")
    # burn about a second of CPU inside the container
    sh(
        containerd,
        cid,
        "end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done",
        timeout=120,
    )
    stat = {k: int(v) for k, v in (ln.split() for ln in (cg / "cpu.stat").read_text().splitlines())}
    view = files(containerd, cid, "/proc/stat")["/proc/stat"]
    stat_after = {
        k: int(v) for k, v in (ln.split() for ln in (cg / "cpu.stat").read_text().splitlines())
    }
    dump(cg, "cpu-busy")
    cpu = [int(v) for v in view.splitlines()[0].split()[1:]]
    ticks = cpu[0] + cpu[2]  # user + system (USER_HZ = 100)
    lo = (stat["user_usec"] + stat["system_usec"]) // 10_000
    hi = (stat_after["user_usec"] + stat_after["system_usec"]) // 10_000
    assert lo > 20, stat  # the loop really ran
    assert lo - 2 <= ticks <= hi + 2, (ticks, lo, hi, view.splitlines()[0])


# --------------------------------------------------------------------------- io


def _block_device_of(path: Path) -> tuple[int, int] | None:
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    names = {
        tuple(map(int, ln.split()[:2])) for ln in Path("/proc/diskstats").read_text().splitlines()
    }
    return (major, minor) if (major, minor) in names else None


def test_io_stat_is_diskstats(containerd, busybox_rootfs, ctr_id):
    """Writes the container makes to a block device show in io.stat and in its diskstats."""
    cid = ctr_id
    data = Path(tempfile.mkdtemp(prefix="iotest-", dir="/var/tmp"))
    try:
        dev = _block_device_of(data)
        if dev is None:
            pytest.skip(f"{data} is not on a block device listed in /proc/diskstats")
        pid = start(
            containerd,
            busybox_rootfs,
            cid,
            "--mount",
            f"type=bind,src={data},dst=/data,options=rbind:rw",
        )
        cg = cgroup_paths.cgroup_dir(pid, "io")
        sh(
            containerd,
            cid,
            "dd if=/dev/zero of=/data/f bs=1M count=8 conv=fsync 2>&1; sync",
            timeout=120,
        )
        io = {}
        for line in (cg / "io.stat").read_text().splitlines():
            key, *pairs = line.split()
            io[key] = dict(p.split("=") for p in pairs)
        dump(cg, "io-written")
        key = f"{dev[0]}:{dev[1]}"
        assert key in io and int(io[key]["wbytes"]) >= 8 * MiB, io
        view = files(containerd, cid, "/proc/diskstats")["/proc/diskstats"]
        rows = {(int(f[0]), int(f[1])): f for f in (ln.split() for ln in view.splitlines())}
        assert dev in rows, view
        # field 10 (index 9) = sectors written; io.stat counts bytes
        assert (
            int(rows[dev][9]) == int(io[key]["wbytes"]) // 512
            or int(rows[dev][9]) >= 8 * MiB // 512
        ), rows[dev]
        assert int(rows[dev][7]) >= 1, rows[dev]  # writes completed
    finally:
        shutil.rmtree(data, ignore_errors=True)


# --------------------------------------------------------------------------- OOM


def test_oom_counts_in_memory_events(containerd, busybox_rootfs, ctr_id):
    """A process killed at memory.max: the kernel counts it in memory.events (what the shim's
    inotify watch reads) and the container keeps running."""
    cid = ctr_id
    pid = start(containerd, busybox_rootfs, cid, "--memory-limit", str(32 * MiB))
    cg = cgroup_paths.cgroup_dir(pid, "memory")
    before = dict(ln.split() for ln in (cg / "memory.events").read_text().splitlines())
    eid = "oom"
    r = containerd.ctr("task", "exec", "--exec-id", eid, cid, "/bin/tail", "/dev/zero", timeout=120)
    assert r.returncode == 137, _explain(r)
    after = dict(ln.split() for ln in (cg / "memory.events").read_text().splitlines())
    dump(cg, "oom-killed")
    assert int(after["oom_kill"]) == int(before["oom_kill"]) + 1, (before, after)
    assert int(after["max"]) > int(before["max"])
    assert containerd.task_status(cid) == "RUNNING"
    m = containerd.ctr("task", "metrics", "--format", "json", cid, timeout=30)
    assert m.returncode == 0, _explain(m)
    assert '"oom_kill":1' in m.stdout.replace(" ", ""), m.stdout
