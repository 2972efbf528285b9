"""crictl, as an operator drives a node: runp / create / start / exec / stats / stop / rm.

Against the newest containerd of the matrix (its CRI plugin, install.sh's drop-in, images built
locally: tests/cri_node.py) with cri-tools' crictl from tests/peer_builds.py. Each handler runs the
same sequence; `runc` is the fairness check (host values show through), `lxcfs` must show the
container's 128 MiB / 500m. `crictl exec` goes through containerd's streaming server (SPDY),
`crictl exec -s` through ExecSync.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import peer_builds as peers
import pytest
from cri_node import BUSYBOX_IMAGE, CriContainerd
from harness import NEWEST, host_meminfo, parse_meminfo, wait_until

pytestmark = pytest.mark.e2e

CRICTL = peers.CRI_TOOLS.path("crictl")
LIMIT = 128 * 1024 * 1024


@pytest.fixture(scope="module")
def node() -> Iterator[CriContainerd]:
    from conftest import _require_e2e_prerequisites

    _require_e2e_prerequisites()
    missing = NEWEST.missing() + ([str(CRICTL)] if not os.access(CRICTL, os.X_OK) else [])
    if missing:
        pytest.fail(
            f"not installed: {missing}; `install.sh --test` builds them with Go "
            "(tests/peer_builds.py)",
            pytrace=False,
        )
    c = CriContainerd(NEWEST)
    try:
        c.start()
        c.import_images()
        yield c
    finally:
        with contextlib.suppress(Exception):
            for pod in crictl(c, "pods", "-q").split():
                crictl(c, "stopp", pod, check=False)
                crictl(c, "rmp", "-f", pod, check=False)
        try:
            c.cleanup_all()
        finally:
            c.stop()
        leaks = c.session_leaks()
        if leaks:
            wait_until(lambda: not c.session_leaks(), 10, 0.2)
            leaks = c.session_leaks()
            c.kill_leftover_shims()
        c.remove_tmpdir()
        for d in Path("/sys/fs/cgroup").glob(f"*/{_parent().lstrip('/')}"):
            for sub in sorted(d.glob("*/"), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()
        assert not leaks, leaks


def _parent() -> str:
    return f"/lxcfs-crictl-{os.getpid()}"


def crictl(node: CriContainerd, *args: str, check: bool = True, timeout: float = 90) -> str:
    endpoint = f"unix://{node.address}"
    cmd = [
        str(CRICTL),
        "--runtime-endpoint",
        endpoint,
        "--image-endpoint",
        endpoint,
        "--timeout",
        "60s",
        *args,
    ]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**node.env, "HOME": str(node.tmpdir)},
    )
    if check:
        assert r.returncode == 0, f"{' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.mark.parametrize("handler", ["runc", "lxcfs"])
def test_crictl_operator_sequence(node, tmp_path, handler):
    pod_json = tmp_path / "pod.json"
    pod_json.write_text(
        json.dumps(
            {
                "metadata": {
                    "name": f"crictl-{handler}",
                    "namespace": "default",
                    "uid": f"uid-{handler}-{os.getpid()}",
                    "attempt": 0,
                },
                "linux": {
                    "cgroup_parent": _parent(),
                    "security_context": {"namespace_options": {"network": 2}},
                },
            }
        )
    )
    ctr_json = tmp_path / "container.json"
    ctr_json.write_text(
        json.dumps(
            {
                "metadata": {"name": "main"},
                "image": {"image": BUSYBOX_IMAGE},
                "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                "linux": {
                    "resources": {
                        "memory_limit_in_bytes": LIMIT,
                        "cpu_period": 100000,
                        "cpu_quota": 50000,
                    },
                    "security_context": {"namespace_options": {"network": 2}},
                },
            }
        )
    )
    pod = crictl(node, "runp", "--runtime", handler, str(pod_json)).strip()
    try:
        inspect = json.loads(crictl(node, "inspectp", pod))
        assert inspect["status"]["state"] == "SANDBOX_READY"
        assert inspect["status"]["runtimeHandler"] == handler
        cid = crictl(node, "create", "--no-pull", pod, str(ctr_json), str(pod_json)).strip()
        crictl(node, "start", cid)
        assert json.loads(crictl(node, "inspect", cid))["status"]["state"] == "CONTAINER_RUNNING"

        streamed = parse_meminfo(crictl(node, "exec", cid, "cat", "/proc/meminfo"))
        synced = parse_meminfo(crictl(node, "exec", "-s", cid, "cat", "/proc/meminfo"))
        cpus = crictl(node, "exec", "-s", cid, "grep", "-c", "^processor", "/proc/cpuinfo")
        want = LIMIT // 1024 if handler == "lxcfs" else host_meminfo()["MemTotal"]
        assert streamed["MemTotal"] == want and synced["MemTotal"] == want
        assert int(cpus) == (1 if handler == "lxcfs" else os.cpu_count())

        stats = json.loads(crictl(node, "stats", "-o", "json", "--id", cid))["stats"]
        assert len(stats) == 1, stats
        assert 0 < int(stats[0]["memory"]["workingSetBytes"]["value"]) < LIMIT
        assert "cpu" in stats[0]

        crictl(node, "stop", "--timeout", "10", cid)
        assert json.loads(crictl(node, "inspect", cid))["status"]["state"] == "CONTAINER_EXITED"
        crictl(node, "rm", cid)
        assert cid not in crictl(node, "ps", "-a", "-q")
    finally:
        crictl(node, "stopp", pod, check=False)
        crictl(node, "rmp", pod, check=False)
    assert pod not in crictl(node, "pods", "-q")
    assert wait_until(lambda: not node.shim_processes(), 15, 0.2), node.shim_processes()
    assert node.wait_no_leaks_for(pod) == []
