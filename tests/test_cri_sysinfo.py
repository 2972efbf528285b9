"""sysinfo(2) through Kubernetes' path (CRI plugin, handler `lxcfs`): busybox `free` in the
pod's container shows its 128 MiB limit, for the init and for ExecSync; a pod annotation
turns it off. Fixtures come from tests/test_cri.py (its own CRI-enabled containerd)."""

from __future__ import annotations

import pytest
import test_cri
from test_cri import LIMIT, container_config, exec_text, teardown_pod

# the CRI containerd, its client and pods: test_cri's module fixtures, used here by name
cri_containerd = test_cri.cri_containerd
client = test_cri.client
pod_factory = test_cri.pod_factory

pytestmark = pytest.mark.e2e

INIT_SCRIPT = "free > /tmp/init-free; trap 'exit 0' TERM; while :; do sleep 1; done"


def free_total(out: str) -> int:
    line = next(ln for ln in out.splitlines() if ln.startswith("Mem:"))
    return int(line.split()[1]) * 1024


def test_pod_free_shows_the_limit(client, pod_factory):
    pod = pod_factory("sysinfo")
    # a second container in the same pod (same shim): the init records its `free`
    config = container_config("second")
    config.command = ["/bin/sh", "-c", INIT_SCRIPT]
    second = client.create_container(pod.sandbox_id, config, pod.sandbox_config)
    client.start_container(second)
    try:
        assert free_total(exec_text(client, pod.container_id, "free")) == LIMIT
        for _ in range(50):  # the init writes it right after start
            r = client.exec_sync(second, ["cat", "/tmp/init-free"], timeout=10)
            if r.exit_code == 0 and r.stdout:
                break
        assert free_total(r.stdout.decode()) == LIMIT, r
        assert free_total(exec_text(client, second, "free")) == LIMIT
    finally:
        client.stop_container(second, timeout=10)
        client.remove_container(second)
        teardown_pod(client, pod)


def test_pod_annotation_opts_out(client, pod_factory):
    pod = pod_factory("sysinfo-off", {"io.containerd.lxcfs.disable": "sysinfo"})
    try:
        assert free_total(exec_text(client, pod.container_id, "free")) > LIMIT
        meminfo = exec_text(client, pod.container_id, "cat", "/proc/meminfo")
        assert int(meminfo.split()[1]) * 1024 == LIMIT  # the files stay on
    finally:
        teardown_pod(client, pod)
