"""sysinfo(2) answered by the shim (seccomp user notification), live: real containerd + runc.

What a program sees through busybox `free` and glibc (`sysconf(_SC_PHYS_PAGES)`, a static C
probe built here) for the init and exec'd processes; an unlimited container sees the host;
the user's seccomp profile keeps denying what it denies; the annotation turns it off. Run
against Debian's containerd 1.6.20 and, when built, containerd 2.4.2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import peer_builds as peers
import pytest
from harness import (
    LXCFS_RUNTIME,
    PrivateContainerd,
    build_busybox_rootfs,
    host_meminfo,
    wait_until,
)

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
LIMIT = 256 * 1024 * 1024
CONTAINERDS = {
    "containerd-1.6": ("containerd", "ctr"),
    "containerd-2.4": (
        str(peers.CONTAINERD_2.path("containerd")),
        str(peers.CONTAINERD_2.path("ctr")),
    ),
}
EPERM = 1


@pytest.fixture(scope="module", params=sorted(CONTAINERDS))
def ctrd(request) -> Iterator[PrivateContainerd]:
    containerd, ctr = CONTAINERDS[request.param]
    if "/" in containerd and not os.access(containerd, os.X_OK):
        pytest.skip(f"{containerd} not built on this machine")
    c = PrivateContainerd(containerd=containerd, ctr=ctr)
    with c:
        yield c
    # shims exit asynchronously after containerd's last Shutdown
    assert wait_until(lambda: not c.session_leaks(), 10, 0.2), c.session_leaks()


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    """busybox plus /bin/probe (tests/sysinfo_probe.c, gcc -static)."""
    d = tempfile.mkdtemp(prefix="sirootfs-", dir="/tmp")
    try:
        root = build_busybox_rootfs(d)
        subprocess.run(
            [
                "gcc",
                "-static",
                "-O2",
                "-Wall",
                "-o",
                str(root / "bin" / "probe"),
                str(HERE / "sysinfo_probe.c"),
            ],
            check=True,
            timeout=120,
        )
        yield root
    finally:
        shutil.rmtree(d, ignore_errors=True)


def probe_values(out: str) -> dict[str, int]:
    return {k: int(v) for k, _, v in (ln.partition("=") for ln in out.split()) if _}


def free_total(out: str) -> int:
    """Bytes from busybox `free` (KiB columns)."""
    for line in out.splitlines():
        if line.startswith("Mem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no Mem: line in {out!r}")


def host_total() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def run(ctrd: PrivateContainerd, rootfs: Path, script: str, *ctr_args: str):
    cid = ctrd.new_id("sysinfo")
    r = ctrd.run(LXCFS_RUNTIME, rootfs, cid, "/bin/sh", "-c", script, ctr_args=ctr_args, timeout=60)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}\n{ctrd.log_tail()}"
    return r.stdout


def test_init_sees_the_limit(ctrd, rootfs):
    out = run(
        ctrd,
        rootfs,
        "free; echo ==; /bin/probe; echo ==; cat /proc/uptime",
        "--memory-limit",
        str(LIMIT),
    )
    free, probe, uptime = out.split("==")
    assert free_total(free) == LIMIT, free
    v = probe_values(probe)
    assert v["phys"] == LIMIT and v["totalram"] == LIMIT, probe
    assert 0 < v["avphys"] <= LIMIT
    # the container's uptime (rounded up like the kernel's), not the host's
    assert abs(v["uptime"] - float(uptime.split()[0])) <= 2, (probe, uptime)
    assert v["procs"] < 20


def test_exec_sees_the_limit(ctrd, rootfs):
    cid = ctrd.new_id("sysinfo-exec")
    r = ctrd.run_detached(
        LXCFS_RUNTIME,
        rootfs,
        cid,
        "/bin/sleep",
        "1000",
        ctr_args=("--memory-limit", str(LIMIT // 2)),
    )
    try:
        assert r.returncode == 0, r.stderr
        assert ctrd.wait_status(cid, "RUNNING")
        time.sleep(1.2)  # uptime must move on from the start
        for n in range(2):  # each exec gets its own filter and notify fd
            e = ctrd.ctr(
                "task",
                "exec",
                "--exec-id",
                f"e{n}",
                cid,
                "/bin/sh",
                "-c",
                "free; /bin/probe",
                timeout=30,
            )
            assert e.returncode == 0, e.stderr
            assert free_total(e.stdout) == LIMIT // 2, e.stdout
            v = probe_values(e.stdout.split("Swap:")[1].split("\n", 1)[1])
            assert v["phys"] == LIMIT // 2
            assert 1 <= v["uptime"] <= 60
    finally:
        ctrd.force_remove(cid)


def test_unlimited_sees_the_host(ctrd, rootfs):
    v = probe_values(run(ctrd, rootfs, "/bin/probe"))
    assert v["phys"] == host_total()
    assert v["totalram"] == host_meminfo()["MemTotal"] * 1024


def test_annotation_turns_it_off(ctrd, rootfs):
    for note in (
        "io.containerd.lxcfs.disable=sysinfo",
        "io.containerd.lxcfs.disable=true",
        "io.containerd.lxcfs.files=meminfo",
    ):
        out = run(
            ctrd,
            rootfs,
            "free; cat /proc/meminfo",
            "--memory-limit",
            str(LIMIT),
            "--annotation",
            note,
        )
        assert free_total(out) == host_total(), (note, out)
        meminfo_total = int(out.split("MemTotal:")[1].split()[0]) * 1024
        assert meminfo_total == (host_total() if note.endswith("true") else LIMIT), note


def test_default_seccomp_profile_still_applies(ctrd, rootfs):
    """containerd's default profile (an allow list): sysinfo is ours, the rest still denied."""
    out = run(
        ctrd,
        rootfs,
        "free; unshare -U true; echo unshare=$?",
        "--memory-limit",
        str(LIMIT),
        "--seccomp",
    )
    assert free_total(out) == LIMIT, out
    assert "unshare=0" not in out, out


def test_user_profile_that_denies(ctrd, rootfs, tmp_path):
    """A profile denying mkdir keeps denying it; one denying sysinfo keeps denying sysinfo."""
    deny_mkdir = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}
        ],
    }
    path = tmp_path / "deny-mkdir.json"
    path.write_text(json.dumps(deny_mkdir))
    out = run(
        ctrd,
        rootfs,
        "free; mkdir /tmp/x; echo mkdir=$?",
        "--memory-limit",
        str(LIMIT),
        "--seccomp",
        "--seccomp-profile",
        str(path),
    )
    assert free_total(out) == LIMIT, out
    assert "mkdir=1" in out, out

    deny_sysinfo = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}],
    }
    path.write_text(json.dumps(deny_sysinfo))
    out = run(
        ctrd,
        rootfs,
        "/bin/probe; echo probe=$?",
        "--memory-limit",
        str(LIMIT),
        "--seccomp",
        "--seccomp-profile",
        str(path),
    )
    assert f"errno={EPERM}" in out and "probe=1" in out, out


# ------------------------------------------------ files runc will not bind: vmstat, pressure


def _vmstat(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in text.splitlines() if ln.strip())}


def test_vmstat_and_pressure_are_the_containers(ctrd, rootfs):
    cid = ctrd.new_id("late-files")
    r = ctrd.run_detached(
        LXCFS_RUNTIME, rootfs, cid, "/bin/sleep", "1000", ctr_args=("--memory-limit", str(LIMIT))
    )
    try:
        assert r.returncode == 0, r.stderr
        assert ctrd.wait_status(cid, "RUNNING")
        e = ctrd.ctr(
            "task",
            "exec",
            "--exec-id",
            "e",
            cid,
            "/bin/sh",
            "-c",
            "cat /proc/vmstat; echo ==; grep MemFree /proc/meminfo; echo ==;"
            " cat /proc/pressure/cpu; echo ==; cat /proc/self/mountinfo",
            timeout=30,
        )
        assert e.returncode == 0, e.stderr
        vmstat, meminfo, pressure, mountinfo = e.stdout.split("==")
        v, host = _vmstat(vmstat), _vmstat(Path("/proc/vmstat").read_text())
        assert list(v) == list(host)  # the kernel's names, in its order
        free = int(meminfo.split()[1]) * 1024
        assert abs(v["nr_free_pages"] * os.sysconf("SC_PAGE_SIZE") - free) <= 4 << 20
        assert 0 < v["pgfault"] < host["pgfault"]
        assert pressure.split()[0] == "some" and "full" in pressure
        for target in (
            "/proc/vmstat",
            "/proc/pressure/cpu",
            "/proc/pressure/memory",
            "/proc/pressure/io",
        ):
            assert f" {target} " in mountinfo, mountinfo
    finally:
        ctrd.force_remove(cid)


def test_vmstat_opt_out(ctrd, rootfs):
    out = run(
        ctrd,
        rootfs,
        "grep -c . /proc/vmstat; grep -c fuse /proc/self/mountinfo",
        "--memory-limit",
        str(LIMIT),
        "--annotation",
        "io.containerd.lxcfs.disable=vmstat,pressure-cpu,pressure-memory,pressure-io",
    )
    lines, fuse = map(int, out.split())
    assert lines == len(Path("/proc/vmstat").read_text().splitlines())
    assert fuse == 9  # the files runc binds, not the four late ones
