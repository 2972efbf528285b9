"""containerd 2.4.2's CRI plugin hands the runtime `options` table to the shim.

containerd 2.x marshals a non-runc runtime's `options` table into `runtimeoptions.v1.Options`
`config_body` and puts it into BootstrapParams; `start` must find `ShimCgroup` and `task_api`
there, and the Create of the pause and the app container the runc keys. The pod runs as kubelet
runs it (tests/cri_client.py), with the pause/busybox images of tests/test_cri.py. With task
API v3, containerd 2.x gives the app container to the sandbox's shim without running `start`
again; with v2 it runs `start`, which finds the group's shim.

The config is tests/cri_node.py's, with this test's own `lxcfs` handler instead of install.sh's
drop-in (which is tested with the peer matrix).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import harness
import peer_builds as peers
import pytest
from cri_client import CriClient
from cri_images import build_image
from cri_node import CriContainerd
from harness import NEWEST
from test_cri import BUSYBOX_IMAGE, PAUSE_IMAGE, container_config, exec_text, sandbox_config

pytestmark = pytest.mark.e2e

PEER = peers.CONTAINERD_2.bin_dir
RUNC_WRAPPER = """#!/bin/sh
echo "$@" >> {log}
exec runc "$@"
"""
#: the test's own lxcfs handler with an options table (no install.sh drop-in beside it)
LXCFS_HANDLER = """\
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.lxcfs]
      runtime_type = "io.containerd.lxcfs.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.lxcfs.options]
{options}"""


def _cri_242(options: str) -> CriContainerd:
    if not os.access(PEER / "containerd", os.X_OK):
        pytest.fail(
            f"{PEER}/containerd not built (install.sh --test builds the peers, with Go)",
            pytrace=False,
        )
    return CriContainerd(NEWEST, runtimes=LXCFS_HANDLER.format(options=options), install=False)


@pytest.mark.parametrize(
    "task_api", ["", "v2"], ids=["containerd-2.4.2-default", "containerd-2.4.2-task_api-v2"]
)
def test_cri_options_table_reaches_start_and_create(task_api: str, tmp_path: Path) -> None:
    wrapper, calls = tmp_path / "my-runc", tmp_path / "calls"
    wrapper.write_text(RUNC_WRAPPER.format(log=calls))
    wrapper.chmod(0o755)
    group = f"bootcri-{os.getpid()}"
    cg = Path("/sys/fs/cgroup/memory", group)
    if not cg.parent.is_dir():
        cg = Path("/sys/fs/cgroup", group)
    cg.mkdir(exist_ok=True)
    lines = [f'BinaryName = "{wrapper}"', f'ShimCgroup = "/{group}"', "NoNewKeyring = true"]
    if task_api:
        lines.append(f'task_api = "{task_api}"')
    c = _cri_242("\n".join("        " + ln for ln in lines))
    sandbox_ids: list[str] = []
    try:
        c.start()
        with tempfile.TemporaryDirectory(prefix="cri-img-", dir="/tmp") as tmp:
            rootfs = harness.build_busybox_rootfs(Path(tmp) / "rootfs")
            for name, cmd in (
                (PAUSE_IMAGE, ["/bin/sleep", "2147483647"]),
                (BUSYBOX_IMAGE, ["/bin/sh"]),
            ):
                image = build_image(rootfs, name, Path(tmp) / "image.tar", cmd=cmd)
                c.ctr("images", "import", str(image.archive), check=True, timeout=120)
        with CriClient(c.address) as client:
            config = sandbox_config("bootcri")
            sandbox = client.run_pod_sandbox(config, "lxcfs")
            sandbox_ids.append(sandbox)
            c.issued_ids.append(sandbox)
            cid = client.create_container(sandbox, container_config("main"), config)
            client.start_container(cid)
            meminfo = exec_text(client, cid, "head", "-1", "/proc/meminfo")
            assert meminfo.strip() == "MemTotal:         131072 kB", meminfo

            shims = c.shim_processes()
            assert len(shims) == 1, shims  # one shim for the pod
            own = Path(f"/proc/{shims[0][0]}/cgroup").read_text()
            assert f"/{group}\n" in own, own
            assert calls.read_text().count("--no-new-keyring") == 2  # pause and app
            h = harness.shim_hash(c.address, c.namespace, sandbox)
            record = (harness.LXCFS_STATE_DIR / h / "task-api").read_text()
            assert record == (task_api or "v3-ttrpc")
            log = c.log_path.read_text(errors="replace")
            connect = [ln for ln in log.splitlines() if f"connecting to shim {sandbox}" in ln]
            assert connect and f"version={3 if not task_api else 2}" in connect[-1], connect

            client.stop_container(cid, timeout=10)
            client.remove_container(cid)
            client.stop_pod_sandbox(sandbox)
            client.remove_pod_sandbox(sandbox)
            sandbox_ids.clear()
        assert harness.wait_until(lambda: not c.shim_processes(), 15, 0.2), c.shim_processes()
        assert c.wait_no_leaks_for(sandbox) == []
    finally:
        with contextlib.suppress(Exception), CriClient(c.address, timeout=30) as client:
            for sandbox in sandbox_ids:
                client.stop_pod_sandbox(sandbox)
                client.remove_pod_sandbox(sandbox)
        try:
            c.cleanup_all()
        finally:
            c.stop()
        if c.session_leaks():
            harness.wait_until(lambda: not c.session_leaks(), 10, 0.2)
            c.kill_leftover_shims()
        c.remove_tmpdir()
        harness.wait_until(lambda: not (cg / "cgroup.procs").read_text(), 10)
        with contextlib.suppress(OSError):
            cg.rmdir()
