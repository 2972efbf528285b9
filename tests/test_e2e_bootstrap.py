"""start's contract with real containerd releases: bootstrap protocol, option types, gRPC.

Each test builds its own PrivateContainerd from a peer binary (containerd 2.4.2 and 1.7.35
from the shared peer cache, Debian's 1.6.20), so the containerd version is in every test id:

* containerd 2.4.2 writes BootstrapParams on stdin and reads our BootstrapResult: with no
  setting the shim serves task API v3 over ttrpc (containerd logs `protocol=ttrpc
  version=3`); runtime options from ctr's --runtime-config-path arrive as an extension;
  a v3-grpc setting is served as v3 ttrpc (2.4.2 would drop a gRPC shim) and the log says so;
* 1.6/1.7 write the options Any itself: v2; the legacy CreateOptions their ctr sends for
  `--no-pivot` (and 1.6's for `--uidmap/--gidmap`: io uid/gid) are honoured by Create.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import harness
import peer_builds as peers
import pytest
from harness import LXCFS_RUNTIME, PrivateContainerd

pytestmark = pytest.mark.e2e

VERSIONS = {
    "containerd-2.4.2": peers.CONTAINERD_2.bin_dir,
    "containerd-1.7.35": peers.CONTAINERD_17.bin_dir,
    "containerd-1.6.20": Path("/usr/bin"),
}
RUNC_WRAPPER = """#!/bin/sh
echo "$@" >> {log}
exec runc "$@"
"""


def _peer(name: str) -> tuple[str, str]:
    bin_dir = VERSIONS[name]
    containerd, ctr = bin_dir / "containerd", bin_dir / "ctr"
    if not (os.access(containerd, os.X_OK) and os.access(ctr, os.X_OK)):
        pytest.fail(
            f"{name}: {containerd} not built (install.sh --test builds the peers, with Go)",
            pytrace=False,
        )
    return str(containerd), str(ctr)


@pytest.fixture(scope="module")
def rootfs():
    d = tempfile.mkdtemp(prefix="bbroot-", dir="/tmp")
    try:
        yield harness.build_busybox_rootfs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def private(name: str, env: dict[str, str] | None = None):
    containerd, ctr = _peer(name)
    c = PrivateContainerd(containerd=containerd, ctr=ctr)
    c.env.update(env or {})
    c.start()
    try:
        yield c
    finally:
        try:
            c.cleanup_all()
        finally:
            c.stop()
        leaks = c.session_leaks()
        if leaks:
            harness.wait_until(lambda: not c.session_leaks(), 10, 0.2)
            leaks = c.session_leaks()
        if leaks:
            c.kill_leftover_shims()
        tail = c.log_tail(60)
        c.remove_tmpdir()
        assert not leaks, f"{name} leaked: {leaks}\n{tail}"


def _explain(c: PrivateContainerd, r) -> str:
    return f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}\nlog:\n{c.log_tail()}"


def _record(c: PrivateContainerd, cid: str) -> str:
    """The task API the running shim serves (shim/entry/config.py's record)."""
    h = harness.shim_hash(c.address, c.namespace, cid)
    return (harness.LXCFS_STATE_DIR / h / "task-api").read_text()


def _bundle(c: PrivateContainerd, cid: str) -> Path:
    return c.state / "io.containerd.runtime.v2.task" / c.namespace / cid


def _connect_line(c: PrivateContainerd, cid: str) -> str:
    lines = [
        ln
        for ln in c.log_path.read_text(errors="replace").splitlines()
        if f"connecting to shim {cid}" in ln
    ]
    return lines[-1] if lines else ""


def _finish(c: PrivateContainerd, cid: str) -> None:
    c.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=20)
    assert c.wait_status(cid, "STOPPED", 20)
    assert c.delete_task(cid) == 137
    c.ctr("container", "rm", cid, timeout=30, check=True)
    assert not c.wait_no_leaks_for(cid, 10)


@pytest.mark.parametrize("name", list(VERSIONS))
def test_default_task_api_is_the_best_containerd_announces(name: str, rootfs: Path) -> None:
    want = "v3-ttrpc" if name.startswith("containerd-2") else "v2"
    with private(name) as c:
        cid = c.new_id("boot")
        r = c.run_detached(LXCFS_RUNTIME, rootfs, cid, "/bin/sleep", "1000")
        assert r.returncode == 0, _explain(c, r)
        assert _record(c, cid) == want
        if name.startswith("containerd-2"):
            line = _connect_line(c, cid)
            assert "protocol=ttrpc" in line and "version=3" in line, line
            saved = json.loads((_bundle(c, cid) / "bootstrap.json").read_text())
            assert saved["version"] == 3 and saved["protocol"] == "ttrpc", saved
        r = c.ctr("task", "exec", "--exec-id", "e1", cid, "/bin/sh", "-c", "head -1 /proc/meminfo")
        assert r.returncode == 0 and "MemTotal" in r.stdout, _explain(c, r)
        _finish(c, cid)
        log = c.log_path.read_text(errors="replace")
        assert "hpack" not in log and "h2." not in log


@pytest.mark.parametrize("name", list(VERSIONS))
def test_runtime_config_path_options_reach_start_and_create(
    name: str, rootfs: Path, tmp_path: Path
) -> None:
    """ctr --runtime-config-path: runtimeoptions in BootstrapParams (2.4.2) or raw (1.x):
    ShimCgroup moves the shim (start), BinaryName and NoNewKeyring reach runc (Create), and
    the explicit task_api wins over the default."""
    wrapper, calls = tmp_path / "my-runc", tmp_path / "calls"
    wrapper.write_text(RUNC_WRAPPER.format(log=calls))
    wrapper.chmod(0o755)
    group = f"bootcg-{os.getpid()}"
    dirs = [
        d
        for d in (Path("/sys/fs/cgroup/memory", group), Path("/sys/fs/cgroup", group))
        if d.parent.is_dir() and (d.parent / "cgroup.procs").exists()
    ][:1]
    for d in dirs:
        d.mkdir(exist_ok=True)
    config = tmp_path / "runtime.toml"
    want = "v2" if name.startswith("containerd-2") else "v3-ttrpc"
    if not name.startswith("containerd-2"):
        want = "v2"  # 1.x knows no v3: leave the default
        config.write_text(
            f'BinaryName = "{wrapper}"\nShimCgroup = "/{group}"\nNoNewKeyring = true\n'
        )
    else:
        config.write_text(
            f'BinaryName = "{wrapper}"\nShimCgroup = "/{group}"\n'
            f'NoNewKeyring = true\ntask_api = "{want}"\n'
        )
    try:
        with private(name) as c:
            cid = c.new_id("opts")
            r = c.run_detached(
                LXCFS_RUNTIME,
                rootfs,
                cid,
                "/bin/sleep",
                "1000",
                ctr_args=("--runtime-config-path", str(config)),
            )
            assert r.returncode == 0, _explain(c, r)
            assert _record(c, cid) == want
            ((shim_pid, _),) = c.shim_processes(cid)
            own = Path(f"/proc/{shim_pid}/cgroup").read_text()
            assert f"/{group}\n" in own, own
            assert "--no-new-keyring" in calls.read_text()
            if name.startswith("containerd-2"):
                assert "version=2" in _connect_line(c, cid)
            _finish(c, cid)
    finally:
        for d in dirs:
            harness.wait_until(lambda d=d: not (d / "cgroup.procs").read_text(), 10)
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.mark.parametrize("name", list(VERSIONS))
def test_unknown_option_fails_start_naming_it(name: str, rootfs: Path, tmp_path: Path) -> None:
    config = tmp_path / "runtime.toml"
    config.write_text("SystemCgroup = true\n")  # a typo of SystemdCgroup
    with private(name) as c:
        cid = c.new_id("badopt")
        r = c.run_detached(
            LXCFS_RUNTIME, rootfs, cid, "/bin/true", ctr_args=("--runtime-config-path", str(config))
        )
        assert r.returncode != 0 and "unknown option 'SystemCgroup'" in r.stderr, _explain(c, r)
        c.ctr("container", "rm", cid, timeout=30)
        assert not c.wait_no_leaks_for(cid, 10)


def test_grpc_setting_is_not_handed_to_containerd_2_4_2(rootfs: Path) -> None:
    """2.4.2 closes a gRPC shim connection before the first call: v3 ttrpc instead, and why."""
    name = "containerd-2.4.2"
    with private(name, env={"CONTAINERD_SHIM_LXCFS_TASK_API": "v3-grpc"}) as c:
        cid = c.new_id("grpc")
        r = c.run_detached(LXCFS_RUNTIME, rootfs, cid, "/bin/sleep", "1000")
        assert r.returncode == 0, _explain(c, r)
        assert _record(c, cid) == "v3-ttrpc"
        line = _connect_line(c, cid)
        assert "protocol=ttrpc" in line and "version=3" in line, line
        log = c.log_path.read_text(errors="replace")
        assert "v3-grpc is served as v3-ttrpc" in log and "grpcDialContext" in log
        _finish(c, cid)


@pytest.mark.parametrize("name", ["containerd-1.6.20", "containerd-1.7.35", "containerd-2.4.2"])
def test_ctr_uidmap_and_no_pivot_options(name: str, rootfs: Path) -> None:
    """ctr --uidmap/--gidmap set IoUid/IoGid and --no-pivot NoPivotRoot: on 1.6/1.7 in the
    legacy containerd.linux.runc.CreateOptions (our runtime name is not io.containerd.runc*),
    on 2.4.2 in runc Options. The container's stdio FIFOs get group 100000 (runc sets the
    owner to the process user), and the Create recorded all three (options.json). ctr 1.7
    and 2.4 apply --uidmap only to an image (not --rootfs): there only --no-pivot is sent."""
    v2 = name != "containerd-1.6.20"  # "only --no-pivot"
    args = (
        ("--no-pivot",)
        if v2
        else ("--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", "--no-pivot")
    )
    want = (
        {"no_pivot_root": True}
        if v2
        else {"no_pivot_root": True, "io_uid": 100000, "io_gid": 100000}
    )
    with private(name) as c:
        if not v2:
            cid = c.new_id("legacy")
            r = c.run(
                LXCFS_RUNTIME,
                rootfs,
                cid,
                "/bin/sh",
                "-c",
                "for f in 0 1 2; do stat -L -c %u:%g /proc/self/fd/$f; done",
                ctr_args=args,
            )
            assert r.returncode == 0, _explain(c, r)
            assert r.stdout.split() == ["0:100000"] * 3, _explain(c, r)
            assert not c.wait_no_leaks_for(cid, 10)
        cid = c.new_id("nopivot")
        r = c.run_detached(LXCFS_RUNTIME, rootfs, cid, "/bin/sleep", "1000", ctr_args=args)
        assert r.returncode == 0, _explain(c, r)
        recorded = json.loads((_bundle(c, cid) / "options.json").read_text())
        assert recorded == want, recorded
        _finish(c, cid)


SHIMCGROUP = peers.SHIMCGROUP.path("shimcgroup")


@pytest.mark.parametrize("name", ["containerd-1.6.20", "containerd-1.7.35"])
def test_go_client_with_shim_cgroup(name: str, rootfs: Path) -> None:
    """containerd's TestShimInCgroup, for our runtime: the 1.7 Go client's WithShimCgroup
    sends the legacy CreateOptions.shim_cgroup (field 9); `start` moves the shim into that
    cgroup. (containerd 2.4.2 itself refuses that type from an old client: `type with url
    containerd.linux.runc.CreateOptions: not found`; its own client sends runc Options.)"""
    if not os.access(SHIMCGROUP, os.X_OK):
        pytest.fail(
            f"{SHIMCGROUP} not built: install.sh --test builds it (tests/peer_builds.py, with Go)",
            pytrace=False,
        )
    group = f"bootgo-{os.getpid()}"
    cg = Path("/sys/fs/cgroup/memory", group)
    if not cg.parent.is_dir():
        cg = Path("/sys/fs/cgroup", group)
    cg.mkdir(exist_ok=True)
    try:
        with private(name) as c:
            cid = c.new_id("goclient")
            r = subprocess.run(
                [
                    str(SHIMCGROUP),
                    c.address,
                    c.namespace,
                    LXCFS_RUNTIME,
                    str(rootfs),
                    cid,
                    f"/{group}",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0 and r.stdout.strip().isdigit(), _explain(c, r)
            ((shim_pid, _),) = c.shim_processes(cid)
            own = Path(f"/proc/{shim_pid}/cgroup").read_text()
            assert f"/{group}\n" in own, own
            _finish(c, cid)
    finally:
        harness.wait_until(lambda: not (cg / "cgroup.procs").read_text(), 10)
        with contextlib.suppress(OSError):
            cg.rmdir()


@pytest.mark.parametrize("name", list(VERSIONS))
def test_containerd_restart_keeps_the_task(name: str, rootfs: Path) -> None:
    """containerd stopped and started again on the same root/state reconnects to the running
    shim with what it saved (2.4.2: bootstrap.json from our BootstrapResult; 1.x: `address`)."""
    with private(name) as c:
        cid = c.new_id("restart")
        r = c.run_detached(LXCFS_RUNTIME, rootfs, cid, "/bin/sleep", "1000")
        assert r.returncode == 0, _explain(c, r)
        ((shim_pid, _),) = c.shim_processes(cid)
        c.stop()
        c.start()
        assert c.task_status(cid) == "RUNNING"
        r = c.ctr(
            "task", "exec", "--exec-id", "after", cid, "/bin/sh", "-c", "head -1 /proc/meminfo"
        )
        assert r.returncode == 0 and "MemTotal" in r.stdout, _explain(c, r)
        assert [pid for pid, _ in c.shim_processes(cid)] == [shim_pid]
        _finish(c, cid)
