"""Churn: ids reused at once, many shims at once, shims nobody uses; nothing fails or stays.

Every test ends with `assert_nothing_left`: no shim process of the containerd, no task or
container, no shim socket, state dir or mount of the ids used, and no FUSE connection that
appeared during the test without a mount (a dead view held by a live process).

The `containerd` fixture below runs each test once per containerd release found on the
machine (Debian's 1.6 and the peers install.sh builds); a shared version matrix can replace
it, the tests only use its PrivateContainerd.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import peer_builds as peers
import pytest
from harness import (
    LXCFS_RUNTIME,
    LXCFS_STATE_DIR,
    SHIM_SOCKET_DIR,
    HarnessError,
    PrivateContainerd,
    mount_points,
    shim_hash,
    wait_until,
)

pytestmark = pytest.mark.e2e

#: (test id, directory of containerd and ctr); None: the ones on PATH (Debian's package)
CONTAINERDS = [
    pytest.param(None, id="containerd-1.6"),
    pytest.param(str(peers.CONTAINERD_2.bin_dir), id="containerd-2.4"),
]
#: How long a shim nobody sends a Create waits before it exits (shim/entry/daemon.py), for the test.
UNUSED_EXIT = 2.0

REUSE_RUNS = int(os.environ.get("CHURN_REUSE_RUNS", "100"))
PARALLEL = int(os.environ.get("CHURN_PARALLEL", "20"))
CYCLES = int(os.environ.get("CHURN_CYCLES", "20"))
SOAK = int(os.environ.get("CHURN_SOAK", "30"))


@pytest.fixture(scope="module", params=CONTAINERDS)
def containerd(request):
    """A private containerd of one release, stopped after the module; shims get a short
    unused-exit time so the test of it stays quick."""
    bin_dir = request.param
    kw = {}
    if bin_dir is not None:
        if not os.access(os.path.join(bin_dir, "containerd"), os.X_OK):
            pytest.skip(f"{bin_dir}/containerd not built (install.sh builds the peers)")
        kw = {"containerd": f"{bin_dir}/containerd", "ctr": f"{bin_dir}/ctr"}
    c = PrivateContainerd(**kw)
    c.env["CONTAINERD_SHIM_LXCFS_UNUSED_EXIT"] = str(UNUSED_EXIT)
    try:
        c.start()
    except HarnessError as e:
        pytest.fail(f"could not start a private containerd: {e}", pytrace=False)
    try:
        yield c
    finally:
        try:
            c.cleanup_all()
        finally:
            c.stop()
            leaks = c.session_leaks()
            if leaks:
                c.kill_leftover_shims()
            c.remove_tmpdir()
        assert not leaks, leaks


def fuse_connections() -> set[str]:
    try:
        return set(os.listdir("/sys/fs/fuse/connections"))
    except OSError:
        return set()


def mounted_fuse_devices() -> set[str]:
    """Minor device numbers of every FUSE mount in this namespace (= connection names)."""
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.startswith("fuse"):
            out.add(left.split(" ")[2].split(":")[1])
    return out


def leftovers(c: PrivateContainerd, ids: list[str], fuse_before: set[str]) -> list[str]:
    problems = [f"shim process {pid}: {cmd}" for pid, cmd in c.shim_processes()]
    problems += [f"task {t}" for t in c.tasks()]
    problems += [f"container {t}" for t in c.containers()]
    for cid in set(ids):
        h = shim_hash(c.address, c.namespace, cid)
        if (SHIM_SOCKET_DIR / h).exists():
            problems.append(f"socket {SHIM_SOCKET_DIR / h} of {cid}")
        if (LXCFS_STATE_DIR / h).exists():
            problems.append(
                f"state dir {LXCFS_STATE_DIR / h} of {cid}: {os.listdir(LXCFS_STATE_DIR / h)}"
            )
        problems += [f"mount {m}" for m in mount_points() if h in m]
    prefix = str(c.tmpdir) + "/"
    problems += [f"mount {m}" for m in mount_points() if m.startswith(prefix) and "/rootfs" in m]
    orphans = fuse_connections() - fuse_before - mounted_fuse_devices()
    problems += [f"FUSE connection {n} without a mount" for n in sorted(orphans)]
    return problems


def assert_nothing_left(c: PrivateContainerd, ids: list[str], fuse_before: set[str]) -> None:
    """Shims exit a little after their Shutdown: give them 15 s, then list what stayed."""
    found: list[str] = []

    def clean() -> bool:
        nonlocal found
        found = leftovers(c, ids, fuse_before)
        return not found

    assert wait_until(clean, 15, 0.2), (
        "left behind:\n  " + "\n  ".join(found) + "\ncontainerd log tail:\n" + c.log_tail(30)
    )


def _failure(r: subprocess.CompletedProcess) -> str | None:
    if r.returncode != 0:
        return f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
    if not r.stdout.startswith("MemTotal:"):
        return f"unexpected output {r.stdout[:80]!r}"
    return None


def test_same_id_back_to_back(containerd, busybox_rootfs):
    """`ctr run --rm` with one id, again and again: each run gets a shim that serves it."""
    before = fuse_connections()
    cid = containerd.new_id("reuse")
    failures = []
    started = time.monotonic()
    for i in range(REUSE_RUNS):
        r = containerd.run(
            LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/head", "-1", "/proc/meminfo", timeout=60
        )
        if problem := _failure(r):
            failures.append(f"run {i}: {problem}")
    took = time.monotonic() - started
    print(f"{REUSE_RUNS} runs with id {cid}: {len(failures)} failed, {took:.1f} s")
    assert not failures, f"{len(failures)} of {REUSE_RUNS} failed:\n" + "\n".join(failures[:10])
    assert_nothing_left(containerd, [cid], before)


def test_parallel_distinct_ids(containerd, busybox_rootfs):
    """Many shims starting, serving and exiting at once (and the zygote handing out spares)."""
    before = fuse_connections()
    ids = [containerd.new_id(f"par{i}") for i in range(PARALLEL)]

    def one(cid: str) -> str | None:
        r = containerd.run(
            LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/head", "-1", "/proc/meminfo", timeout=120
        )
        problem = _failure(r)
        return f"{cid}: {problem}" if problem else None

    with ThreadPoolExecutor(PARALLEL) as pool:
        failures = [f for f in pool.map(one, ids) if f]
    assert not failures, "\n".join(failures)
    assert_nothing_left(containerd, ids, before)


def test_detached_cycles_with_one_id(containerd, busybox_rootfs):
    """run -d, kill, delete the task, delete the container, run again: the same id each time."""
    before = fuse_connections()
    cid = containerd.new_id("cycle")
    for i in range(CYCLES):
        r = containerd.run_detached(LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/sleep", "1000")
        assert r.returncode == 0, f"cycle {i}: run -d: {r.stderr}"
        r = containerd.ctr(
            "task",
            "exec",
            "--exec-id",
            f"e{i}",
            cid,
            "/bin/head",
            "-1",
            "/proc/meminfo",
            timeout=30,
        )
        assert r.returncode == 0 and r.stdout.startswith("MemTotal:"), f"cycle {i}: {r.stderr}"
        r = containerd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=30)
        assert r.returncode == 0, f"cycle {i}: kill: {r.stderr}"
        assert containerd.wait_status(cid, "STOPPED", 20), f"cycle {i}: never STOPPED"
        assert containerd.delete_task(cid) == 137, f"cycle {i}: task rm"
        r = containerd.ctr("container", "rm", cid, timeout=30)
        assert r.returncode == 0, f"cycle {i}: container rm: {r.stderr}"
    assert_nothing_left(containerd, [cid], before)


def test_a_shim_nobody_uses_exits(containerd, tmp_path):
    """`start` prints an address that containerd never dials (it failed, or was killed):
    the shim exits on its own after the unused-exit time and removes what it made."""
    before = fuse_connections()
    cid = containerd.new_id("unused")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shim = os.path.join(containerd.shim_bin_dir or "", "containerd-shim-lxcfs-v2")
    env = dict(containerd.env, TTRPC_ADDRESS=containerd.ttrpc_address)
    r = subprocess.run(
        [
            shim,
            "-namespace",
            containerd.namespace,
            "-address",
            containerd.address,
            "-id",
            cid,
            "start",
        ],
        cwd=bundle,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    h = shim_hash(containerd.address, containerd.namespace, cid)
    assert r.stdout.strip() == f"unix://{SHIM_SOCKET_DIR / h}"
    # the zygote's spare takes on the shim's title after `start` has printed (seen late once,
    # under CI load): wait for it
    assert wait_until(lambda: len(containerd.shim_processes(cid)) == 1, 10, 0.05), (
        f"no shim process for {cid}: {containerd.shim_processes(cid)}"
    )
    ((pid, _),) = containerd.shim_processes(cid)
    try:
        assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), UNUSED_EXIT + 15, 0.1), (
            "the unused shim did not exit"
        )
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
    assert_nothing_left(containerd, [cid], before)


def test_start_with_a_missing_shim_cgroup_launches_nothing(containerd, tmp_path):
    """ShimCgroup names no cgroup: `start` fails with containerd's message before it
    launches a shim (a shim killed after the fact could leave its view mounted)."""
    from betterproto.lib.google.protobuf import Any as AnyMsg

    from protos.gen.containerd.runc import v1 as runc_opts

    before = fuse_connections()
    options = bytes(
        AnyMsg(
            type_url="containerd.runc.v1.Options",
            value=bytes(runc_opts.Options(shim_cgroup=f"/churn-missing-{os.getpid()}")),
        )
    )
    shim = os.path.join(containerd.shim_bin_dir or "", "containerd-shim-lxcfs-v2")
    env = dict(containerd.env, TTRPC_ADDRESS=containerd.ttrpc_address)
    ids = []
    for attempt in range(2):  # the first may launch the zygote, the second is forked
        cid = containerd.new_id(f"nocg{attempt}")
        ids.append(cid)
        bundle = tmp_path / cid
        bundle.mkdir()
        r = subprocess.run(
            [
                shim,
                "-namespace",
                containerd.namespace,
                "-address",
                containerd.address,
                "-id",
                cid,
                "start",
            ],
            cwd=bundle,
            env=env,
            input=options,
            capture_output=True,
            timeout=30,
        )
        assert r.returncode == 1 and b"does not exist" in r.stderr, r
        assert not r.stdout
    assert_nothing_left(containerd, ids, before)


def test_short_soak(containerd, busybox_rootfs):
    """bench/soak.py's loop, shortened: create/start/exec/kill/delete with ids reused, and
    nothing of ours grows (processes, fds, threads, the zygote's RSS, mounts, FUSE
    connections, sockets, state dirs). `python -m bench --only soak` runs 500 of them."""
    from bench.soak import soak

    launcher = os.path.join(containerd.shim_bin_dir or "", "containerd-shim-lxcfs-v2")
    before, after, failures, took = soak(containerd, busybox_rootfs, SOAK, launcher, workers=3)
    print(f"soak of {SOAK}: {took:.1f} s\nbefore {before}\nafter  {after}")
    assert not failures, failures[:5]
    for name, was in before.items():
        if name.startswith("containerd "):
            continue  # containerd's own Go runtime threads and fds come and go
        if name.startswith("zygote RSS"):
            assert after[name] <= was + 512, (name, was, after[name])
        else:
            assert after[name] == was, (name, was, after[name])
