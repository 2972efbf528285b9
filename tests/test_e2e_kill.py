"""kill -9 of the shim at every stage of Create, Start, Exec and Delete.

The shim SIGKILLs itself on reaching a stage mark (shim/trace.py, `CONTAINERD_SHIM_LXCFS_KILL_AT`
in containerd's environment, which every shim inherits). containerd must report a clear error,
and once it has cleaned up after the dead shim (its `delete`), nothing may be left on the node:
no shim process, container process, mount (view, rootfs), FUSE connection, cgroup, runc state,
socket or state dir.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

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
from test_e2e_churn import CONTAINERDS, fuse_connections, mounted_fuse_devices

pytestmark = pytest.mark.e2e

#: (stage mark where the shim dies, what the test does: the step expected to fail)
STAGES = [
    ("rpc Create", "create"),
    ("runc create", "create"),
    ("runc create done", "create"),
    ("rpc Create done", "create"),
    ("rpc Start", "start"),
    ("runc start", "start"),
    ("runc start done", "start"),
    ("rpc Start done", "start"),
    ("rpc Exec", "exec"),
    ("runc exec", "exec"),
    ("runc exec done", "exec"),
    ("rpc Delete", "delete"),
    ("runc delete", "delete"),
    ("runc delete done", "delete"),
    ("rpc Delete done", "delete"),
]


@pytest.fixture(params=CONTAINERDS)
def containerd_bin(request):
    bin_dir = request.param
    if bin_dir is not None and not os.access(os.path.join(bin_dir, "containerd"), os.X_OK):
        pytest.skip(f"{bin_dir}/containerd not built (install.sh builds the peers)")
    return bin_dir


def _start(bin_dir: str | None, kill_at: str) -> PrivateContainerd:
    kw = {"containerd": f"{bin_dir}/containerd", "ctr": f"{bin_dir}/ctr"} if bin_dir else {}
    c = PrivateContainerd(**kw)
    c.env["CONTAINERD_SHIM_LXCFS_KILL_AT"] = kill_at
    try:
        return c.start()
    except HarnessError as e:
        pytest.fail(f"could not start a private containerd: {e}", pytrace=False)


def _cgroups_of(namespace: str, cid: str) -> list[str]:
    """The container's cgroup directories (ctr puts it at /<namespace>/<id>)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] in ("cgroup", "cgroup2"):
            d = Path(left.split(" ")[4], namespace, cid)
            if d.exists():
                out.append(str(d))
    return out


def _processes_in(namespace: str, cid: str) -> list[int]:
    needle = f"/{namespace}/{cid}"
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/cgroup").read_text():
                    out.append(int(entry))
            except OSError:
                pass
    return out


def _left(c: PrivateContainerd, cid: str, fuse_before: set[str]) -> list[str]:
    h = shim_hash(c.address, c.namespace, cid)
    problems = [f"shim process {pid}: {cmd}" for pid, cmd in c.shim_processes()]
    problems += [f"container process {pid}" for pid in _processes_in(c.namespace, cid)]
    problems += [f"cgroup {d}" for d in _cgroups_of(c.namespace, cid)]
    runc_state = Path("/run/containerd/runc", c.namespace, cid)
    if runc_state.exists():
        problems.append(f"runc state {runc_state}")
    if (SHIM_SOCKET_DIR / h).exists():
        problems.append(f"socket {SHIM_SOCKET_DIR / h}")
    if (LXCFS_STATE_DIR / h).exists():
        problems.append(f"state dir {LXCFS_STATE_DIR / h}")
    problems += [f"mount {m}" for m in mount_points() if h in m or str(c.tmpdir) + "/" in m]
    orphans = fuse_connections() - fuse_before - mounted_fuse_devices()
    problems += [f"FUSE connection {n} without a mount" for n in sorted(orphans)]
    return problems


@pytest.mark.parametrize(("stage", "step"), STAGES, ids=[s.replace(" ", "-") for s, _ in STAGES])
def test_kill_9_of_the_shim(containerd_bin, busybox_rootfs, stage, step):
    fuse_before = fuse_connections()
    c = _start(containerd_bin, stage)
    cid = c.new_id("k9")
    try:
        if step == "create":
            r = c.run_detached(LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/sleep", "1000", timeout=60)
            failed = r
        else:
            r = c.run_detached(LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/sleep", "1000")
            if step == "start":
                failed = r
            else:
                assert r.returncode == 0, r.stderr
                if step == "exec":
                    failed = c.ctr("task", "exec", "--exec-id", "e1", cid, "/bin/true", timeout=60)
                else:
                    c.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=30)
                    assert c.wait_status(cid, "STOPPED", 20)
                    failed = c.ctr("task", "rm", cid, timeout=60)
        errors = [line for line in failed.stderr.splitlines() if line.startswith("ctr: ")]
        print(f"{stage}: ctr exit {failed.returncode}: {errors}")
        assert failed.returncode != 0, f"the step survived a dead shim: {failed.stdout}"
        assert errors, f"containerd gave no error message: {failed.stderr}"
        # containerd cleans up after the dead shim (runs its `delete`); then remove the rest
        c.force_remove(cid)
        found: list[str] = []

        def clean() -> bool:
            nonlocal found
            found = _left(c, cid, fuse_before)
            return not found

        assert wait_until(clean, 15, 0.2), (
            "left behind:\n  " + "\n  ".join(found) + "\ncontainerd log tail:\n" + c.log_tail(30)
        )
    finally:
        c.cleanup_all()
        c.stop()
        for pid, _ in c.shim_processes():
            os.kill(pid, signal.SIGKILL)
        c.remove_tmpdir()
