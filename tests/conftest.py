"""Shared fixtures: a private containerd, a busybox rootfs, the runtime matrix, container ids.

Fixtures
--------
containerd (session)      harness.PrivateContainerd, started and answering, once per containerd
                          release of the matrix (harness.CONTAINERD_MATRIX: Debian's 1.6,
                          1.7.35, 2.4.2; param ids "1.6", "1.7.35", "2.4.2", so a failure reads
                          `test_x[2.4.2-lxcfs]`; $LXCFS_TEST_CONTAINERD="1.6,2.4.2" narrows it
                          on purpose). A release whose binaries are missing FAILS its tests
                          with a message saying how to get it. Attributes:
                          address, ttrpc_address, namespace, log_path, config_path, tmpdir,
                          env, shim_bin_dir; helpers ctr(*args, input=None, timeout=60,
                          check=False) -> CompletedProcess, run(runtime, rootfs, cid, *cmd,
                          ctr_args=(), input=None, timeout=60), run_detached(runtime,
                          rootfs, cid, *cmd, ctr_args=(), timeout=60), new_id(hint), tasks(),
                          task_status(cid), wait_status(cid, status, timeout),
                          delete_task(cid) -> exit status, force_remove(cid), leaks_for(cid).
                          Teardown removes leftover containers, stops containerd and FAILS the
                          session if shims, FUSE mounts or shim sockets of it are left behind.
busybox_rootfs (session)  pathlib.Path of a rootfs built from /bin/busybox.
runtime                   "io.containerd.runc.v2" (id runc) or "io.containerd.lxcfs.v2" (id lxcfs).
containerd_release        a harness.ContainerdRelease of the matrix (binaries present), for tests
                          that run a containerd binary themselves.
cid                       a fresh container id; after the test the container is force-removed
                          and the test FAILS if its shim process, socket or mounts remain.

Tests marked `one_containerd` run against the newest release only (they check the shim, not
containerd, and the matrix must fit CI's time budget; see README "Test matrix").

Core tests are never skipped: not being root, or a missing containerd/ctr/runc/busybox, is a
failure with a message that says what to install.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import LXCFS_RUNTIME, RUNC_RUNTIME, HarnessError, PrivateContainerd


def _release_params() -> list:
    try:
        releases = harness.selected_releases()
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None
    return [pytest.param(r, id=r.version) for r in releases]


RELEASES = _release_params()

RUNTIMES = [
    pytest.param(RUNC_RUNTIME, id="runc"),
    pytest.param(LXCFS_RUNTIME, id="lxcfs"),
]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "lxcfs_view: asserts the per-container /proc view that only io.containerd.lxcfs.v2 gives",
    )
    config.addinivalue_line("markers", "e2e: drives a real containerd, runc and FUSE (root only)")
    config.addinivalue_line(
        "markers",
        "one_containerd: runs against the newest containerd of the matrix only (checks the shim)",
    )


def pytest_collection_modifyitems(config, items):
    """`one_containerd` tests keep only the newest selected release's instance."""
    newest = RELEASES[-1].values[0] if RELEASES else None
    keep, drop = [], []
    for item in items:
        spec = getattr(item, "callspec", None)
        release = spec.params.get("containerd") if spec else None
        if (
            release is not None
            and release is not newest
            and item.get_closest_marker("one_containerd")
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _require_e2e_prerequisites() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append(f"e2e tests need root (euid={os.geteuid()}): ./install.sh --test as root")
    for tool, pkg in (("containerd", "containerd"), ("ctr", "containerd"), ("runc", "runc")):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` not on PATH: apt-get install {pkg} (install.sh does)")
    if not os.access("/bin/busybox", os.X_OK):
        problems.append("/bin/busybox missing: apt-get install busybox-static (install.sh does)")
    if problems:
        pytest.fail("e2e prerequisites missing:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(params=RELEASES)
def containerd_release(request) -> harness.ContainerdRelease:
    """A release of the matrix whose binaries are installed (else the test FAILS, saying how)."""
    release: harness.ContainerdRelease = request.param
    missing = release.missing()
    if missing:
        pytest.fail(
            f"containerd {release.version} is not installed (missing {missing}); "
            f"it is {release.how}",
            pytrace=False,
        )
    return release


@pytest.fixture(scope="session", params=RELEASES)
def containerd(request):
    _require_e2e_prerequisites()
    release: harness.ContainerdRelease = request.param
    missing = release.missing()
    if missing:
        pytest.fail(
            f"containerd {release.version} is not installed (missing {missing}); "
            f"it is {release.how}",
            pytrace=False,
        )
    try:
        c = PrivateContainerd(containerd=release.containerd, ctr=release.ctr).start()
    except HarnessError as e:
        pytest.fail(f"could not start a private containerd: {e}", pytrace=False)
    leftovers: list[str] = []
    try:
        yield c
    finally:
        try:
            leftovers = c.cleanup_all()
        finally:
            c.stop()
        leaks = c.session_leaks()
        if leaks:
            # one more chance: shims exit asynchronously after containerd's last Shutdown
            harness.wait_until(lambda: not c.session_leaks(), 10, 0.2)
            leaks = c.session_leaks()
        if leaks:
            c.kill_leftover_shims()
        log_tail = c.log_tail(60)
        c.remove_tmpdir()
        msgs = []
        if leftovers:
            msgs.append(f"containers left in containerd at session end: {leftovers}")
        if leaks:
            msgs.append("leaked after containerd stopped:\n  " + "\n  ".join(leaks))
        if msgs:
            pytest.fail("\n".join(msgs) + "\ncontainerd log tail:\n" + log_tail, pytrace=False)


@pytest.fixture(scope="session")
def busybox_rootfs():
    _require_e2e_prerequisites()
    d = tempfile.mkdtemp(prefix="bbroot-", dir="/tmp")
    try:
        yield harness.build_busybox_rootfs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=RUNTIMES)
def runtime(request, containerd):
    """The containerd runtime under test; lxcfs needs `containerd-shim-lxcfs-v2` installed."""
    return request.param


@pytest.fixture
def cid(request, containerd):
    """A fresh container id; afterwards: force-removed, and no shim/socket/mount may remain."""
    name = request.node.name
    value = containerd.new_id(name.replace("test_", "", 1))
    yield value
    leftover = containerd.task_status(value) is not None or value in containerd.containers()
    containerd.force_remove(value)
    leaks = containerd.wait_no_leaks_for(value, timeout=10)
    if leaks:
        pytest.fail(
            f"container {value} left behind:\n  "
            + "\n  ".join(leaks)
            + "\ncontainerd log tail:\n"
            + containerd.log_tail(30),
            pytrace=False,
        )
    if leftover:
        # a test that ran `ctr run --rm` to completion must not leave the container behind
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.passed:
            pytest.fail(f"container {value} still existed after the test", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
