"""Kubernetes' path: kubelet's CRI calls to containerd's CRI plugin, runtime handler `lxcfs`.

A private containerd with the CRI plugin enabled (own root, state, socket) reads a config.toml
whose CRI section sets the sandbox image, overlayfs and empty CNI dirs, and imports the drop-in
that `install.sh --containerd-config-only` writes, i.e. exactly what a node gets. Pause and
container images are built from the host's busybox-static (tests/cri_images.py) and imported
into the `k8s.io` namespace with `ctr images import`; pods use the host network, so no CNI
plugin is needed. The client (tests/cri_client.py) speaks CRI runtime.v1 over gRPC like kubelet.

Facts relied on (containerd 1.6.20): RunPodSandbox without CNI config fails only for pods that
are not on the host network; CRI forwards pod annotations matching the handler's
`pod_annotations` into both the sandbox's and the containers' OCI specs; StopPodSandbox
SIGKILLs the pause process.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cgroup_paths
import pytest
from conftest import RELEASES
from cri_client import CriClient
from cri_node import BUSYBOX_IMAGE, PAUSE_IMAGE, CriContainerd
from harness import (
    LXCFS_SHIM,
    host_meminfo,
    mount_points,
    parse_meminfo,
    wait_until,
)

from protos.gen.runtime import v1 as cri

pytestmark = pytest.mark.e2e

HANDLER = "lxcfs"
LIMIT = 128 * 1024 * 1024
CPU_PERIOD, CPU_QUOTA = 100_000, 50_000  # 500m
CGROUP_V1_ROOT = Path("/sys/fs/cgroup")
#: Every sandbox started (= the shim's group id, which names its socket and state dir).
SANDBOX_IDS: list[str] = []


@dataclass
class Pod:
    sandbox_id: str
    container_id: str
    sandbox_config: cri.PodSandboxConfig


def cgroup_parent() -> str:
    return f"/lxcfs-cri-test-{os.getpid()}"


def leftover_cgroups() -> list[str]:
    """cgroup v1 dirs (or the v2 dir) of our pods' parent that still exist."""
    name = cgroup_parent().lstrip("/")
    return [str(p) for p in CGROUP_V1_ROOT.glob(f"*/{name}")] + (
        [str(CGROUP_V1_ROOT / name)] if (CGROUP_V1_ROOT / name).is_dir() else []
    )


def remove_cgroup_parent() -> None:
    for path in leftover_cgroups():
        for sub in sorted(Path(path).glob("*/"), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            Path(path).rmdir()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=RELEASES)
def cri_containerd(request) -> Iterator[CriContainerd]:
    from conftest import _require_e2e_prerequisites

    _require_e2e_prerequisites()
    release = request.param
    if release.missing():
        pytest.fail(
            f"containerd {release.version} is not installed (missing "
            f"{release.missing()}); it is {release.how}",
            pytrace=False,
        )
    c = CriContainerd(release)
    try:
        c.start()
        c.import_images()
        yield c
    finally:
        leftovers: list[str] = []
        with contextlib.suppress(Exception), CriClient(c.address, timeout=30) as client:
            for p in client.list_pod_sandboxes():
                leftovers.append(f"sandbox {p.id}")
                client.stop_pod_sandbox(p.id)
                client.remove_pod_sandbox(p.id)
        c.issued_ids.extend(SANDBOX_IDS)
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
        remove_cgroup_parent()
        if leftovers or leaks:
            pytest.fail(f"CRI containerd left behind: {leftovers} {leaks}", pytrace=False)


@pytest.fixture(scope="module")
def client(cri_containerd: CriContainerd) -> Iterator[CriClient]:
    with CriClient(cri_containerd.address) as c:
        yield c


def sandbox_config(name: str, annotations: dict[str, str] | None = None) -> cri.PodSandboxConfig:
    uid = str(uuid.uuid4())
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname="",  # kubelet leaves it empty for host-network pods (no UTS namespace)
        labels={"app": name},
        annotations=annotations or {},
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent(),
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=cri.NamespaceOption(
                    network=cri.NamespaceMode.NODE,
                    pid=cri.NamespaceMode.CONTAINER,
                    ipc=cri.NamespaceMode.POD,
                )
            ),
        ),
    )


def container_config(name: str) -> cri.ContainerConfig:
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=0),
        image=cri.ImageSpec(image=BUSYBOX_IMAGE),
        # exits on SIGTERM at once (a PID 1 without handlers would ignore it)
        command=["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        linux=cri.LinuxContainerConfig(
            resources=cri.LinuxContainerResources(
                memory_limit_in_bytes=LIMIT,
                cpu_period=CPU_PERIOD,
                cpu_quota=CPU_QUOTA,
                cpu_shares=512,
            ),
            security_context=cri.LinuxContainerSecurityContext(
                namespace_options=cri.NamespaceOption(
                    network=cri.NamespaceMode.NODE,
                    pid=cri.NamespaceMode.CONTAINER,
                    ipc=cri.NamespaceMode.POD,
                )
            ),
        ),
    )


def start_pod(
    client: CriClient, name: str, annotations: dict[str, str] | None = None, handler: str = HANDLER
) -> Pod:
    config = sandbox_config(name, annotations)
    sandbox_id = client.run_pod_sandbox(config, handler)
    SANDBOX_IDS.append(sandbox_id)  # the shim group id: leak checks look for its state
    container_id = client.create_container(sandbox_id, container_config("main"), config)
    client.start_container(container_id)
    return Pod(sandbox_id, container_id, config)


def teardown_pod(client: CriClient, pod: Pod) -> None:
    """Kubelet's order: StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox."""
    client.stop_container(pod.container_id, timeout=10)
    client.remove_container(pod.container_id)
    client.stop_pod_sandbox(pod.sandbox_id)
    client.remove_pod_sandbox(pod.sandbox_id)


@pytest.fixture
def pod_factory(client: CriClient, cri_containerd: CriContainerd) -> Iterator:
    pods: list[Pod] = []

    def make(name: str, annotations: dict[str, str] | None = None) -> Pod:
        pod = start_pod(client, name, annotations)
        pods.append(pod)
        return pod

    yield make
    for pod in pods:
        with contextlib.suppress(Exception):
            client.stop_pod_sandbox(pod.sandbox_id)
            client.remove_pod_sandbox(pod.sandbox_id)


def exec_text(client: CriClient, cid: str, *cmd: str) -> str:
    r = client.exec_sync(cid, list(cmd), timeout=30)
    assert r.exit_code == 0, f"{cmd}: exit {r.exit_code}, stderr {r.stderr!r}"
    return r.stdout.decode()


def processors(cpuinfo: str) -> int:
    return sum(1 for line in cpuinfo.splitlines() if line.startswith("processor"))


# --------------------------------------------------------------------------- tests


def test_drop_in_comes_from_install_sh(cri_containerd):
    dropin = (cri_containerd.tmpdir / "conf.d" / "lxcfs.toml").read_text()
    assert 'runtime_type = "io.containerd.lxcfs.v2"' in dropin
    if cri_containerd.major >= 2:
        # 2.x merges per key: the handler alone, under the 2.x plugin name
        assert '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.lxcfs]' in dropin
    else:
        assert f'sandbox_image = "{PAUSE_IMAGE}"' in dropin  # the node's CRI section was kept
    assert "validated" in cri_containerd.install_output


def test_cri_plugin_answers(client):
    v = client.version()
    assert v.runtime_name == "containerd"
    assert v.runtime_api_version == "v1"
    for image in (PAUSE_IMAGE, BUSYBOX_IMAGE):
        assert client.image_status(image) is not None, f"{image} not visible to CRI"


@pytest.mark.parametrize("handler", ["runc", "lxcfs"])
def test_pod_lifecycle(client, cri_containerd, handler):
    """The whole kubelet sequence on one pod; every step's effect is checked.

    With containerd's stock handler `runc` (the fairness check) the host's values show
    through; with `lxcfs` the container sees its 128 MiB / 500m limits.
    """
    pod = start_pod(client, f"lifecycle-{handler}", handler=handler)
    try:
        sandboxes = {p.id: p for p in client.list_pod_sandboxes()}
        assert sandboxes[pod.sandbox_id].runtime_handler == handler
        assert sandboxes[pod.sandbox_id].state == cri.PodSandboxState.SANDBOX_READY
        status = client.container_status(pod.container_id)
        assert status.state == cri.ContainerState.CONTAINER_RUNNING

        shims = [cmd for _pid, cmd in cri_containerd.shim_processes()]
        want = LXCFS_SHIM if handler == HANDLER else "containerd-shim-runc-v2"
        assert shims and all(want in cmd for cmd in shims), shims

        meminfo = exec_text(client, pod.container_id, "cat", "/proc/meminfo")
        cpuinfo = exec_text(client, pod.container_id, "cat", "/proc/cpuinfo")
        if handler == HANDLER:
            assert meminfo.splitlines()[0] == "MemTotal:         131072 kB", meminfo[:200]
            assert processors(cpuinfo) == 1, f"500m CPU should show 1 processor:\n{cpuinfo[:400]}"
        else:
            assert parse_meminfo(meminfo)["MemTotal"] == host_meminfo()["MemTotal"]
            assert processors(cpuinfo) == os.cpu_count()

        stats = client.container_stats(pod.container_id)
        assert stats.attributes.id == pod.container_id
        assert stats.memory.timestamp > 0 and stats.memory.working_set_bytes.value > 0
        assert 0 < stats.memory.usage_bytes.value < LIMIT
        assert stats.cpu.timestamp > 0 and stats.cpu.usage_core_nano_seconds.value > 0
    finally:
        teardown_pod(client, pod)

    assert pod.container_id not in {c.id for c in client.list_containers()}
    assert pod.sandbox_id not in {p.id for p in client.list_pod_sandboxes()}
    assert wait_until(lambda: not cri_containerd.shim_processes(), 15, 0.2), (
        f"shims left: {cri_containerd.shim_processes()}"
    )
    # no shim socket, FUSE view mount or shim state dir of the pod's shim group
    assert cri_containerd.wait_no_leaks_for(pod.sandbox_id) == []
    assert cri_containerd.tasks() == {}
    assert cri_containerd.containers() == []
    state = str(cri_containerd.state) + "/"
    assert not [m for m in mount_points() if m.startswith(state)], "mounts left under state"
    assert not [d for d in leftover_cgroups() if list(Path(d).glob("*/"))], (
        f"container cgroups left: {leftover_cgroups()}"
    )


def test_pod_opting_out_keeps_host_view(client, pod_factory):
    pod = pod_factory("optout", {"io.containerd.lxcfs.disable": "true"})
    meminfo = parse_meminfo(exec_text(client, pod.container_id, "cat", "/proc/meminfo"))
    assert meminfo["MemTotal"] == host_meminfo()["MemTotal"]
    cpuinfo = exec_text(client, pod.container_id, "cat", "/proc/cpuinfo")
    assert processors(cpuinfo) == os.cpu_count()
    teardown_pod(client, pod)


def test_pod_selecting_files_gets_only_those(client, pod_factory):
    only_cpu = pod_factory("onlycpu", {"io.containerd.lxcfs.files": "cpuinfo"})
    only_mem = pod_factory("onlymem", {"io.containerd.lxcfs.files": "meminfo"})
    host_total = host_meminfo()["MemTotal"]

    mem = parse_meminfo(exec_text(client, only_cpu.container_id, "cat", "/proc/meminfo"))
    assert mem["MemTotal"] == host_total, "meminfo was not selected: host view expected"
    cpus = processors(exec_text(client, only_cpu.container_id, "cat", "/proc/cpuinfo"))
    assert cpus == 1, "cpuinfo was selected: 500m should show 1 processor"

    mem = parse_meminfo(exec_text(client, only_mem.container_id, "cat", "/proc/meminfo"))
    assert mem["MemTotal"] == LIMIT // 1024
    cpus = processors(exec_text(client, only_mem.container_id, "cat", "/proc/cpuinfo"))
    assert cpus == os.cpu_count(), "cpuinfo was not selected: host view expected"

    teardown_pod(client, only_cpu)
    teardown_pod(client, only_mem)


def test_cgroup_namespace_on_v2(client, pod_factory):
    """On a cgroup v2 host CRI gives each container its own cgroup namespace: inside, the
    container's cgroup is `/` and /sys/fs/cgroup is that cgroup. The shim resolves the real
    path from outside, so the view keeps the pod's limits."""
    if not cgroup_paths.unified():
        pytest.skip(
            "cgroup v1 host: no cgroup namespace here; tests/test_guest_cgroup_v2.py "
            "runs this in a cgroup v2 guest"
        )
    pod = pod_factory("cgns")
    assert exec_text(client, pod.container_id, "cat", "/proc/self/cgroup") == "0::/\n"
    inside = exec_text(client, pod.container_id, "cat", "/sys/fs/cgroup/memory.max")
    assert inside.strip() == str(LIMIT)
    meminfo = parse_meminfo(exec_text(client, pod.container_id, "cat", "/proc/meminfo"))
    assert meminfo["MemTotal"] == LIMIT // 1024
