"""A real kubelet runs Pods with `runtimeClassName: lxcfs` (and, for fairness, `runc`).

One-node cluster from tests/k8s_cluster.py (etcd, kube-apiserver, kubelet, containerd 2.4.2 with
install.sh's drop-in). The test applies what a cluster admin applies: `deploy/runtimeclass.yaml`
as shipped, a `runc` RuntimeClass, the node label the installer's docs ask for, a ServiceAccount
(no controller-manager makes one), then Pods through kubectl. Images are built locally from
busybox-static and imported into containerd (`imagePullPolicy: Never`; no registry here).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cri_images import build_image
from cri_node import BUSYBOX_IMAGE, PAUSE_IMAGE
from harness import (
    HarnessError,
    build_busybox_rootfs,
    fuse_mounts,
    host_meminfo,
    parse_meminfo,
    shim_hash,
    wait_until,
)
from k8s_cluster import (
    NODE,
    REPO,
    Cluster,
    missing_binaries,
    zygote_pids,
)

pytestmark = pytest.mark.e2e

LIMIT_KB = 128 * 1024
VIEW = "head -1 /proc/meminfo; grep -c ^processor /proc/cpuinfo"
#: PID 1 exits on SIGTERM (status 3) so `kill 1` ends the container and kubelet restarts it.
SERVE = "trap 'exit 3' TERM; sleep 100000 & wait"
#: Overhead measurements, printed at the end of the module (README / runtimeclass.yaml).
MEASURED: dict[str, str] = {}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    from conftest import _require_e2e_prerequisites

    _require_e2e_prerequisites()
    missing = missing_binaries()
    if missing:
        pytest.fail(
            "cluster binaries missing (install.sh --test builds them with "
            f"tests/peers/k8s/build.sh): {missing}",
            pytrace=False,
        )
    t0 = time.monotonic()
    c = Cluster()
    forced: list[str] = []
    try:
        try:
            c.start()
        except HarnessError as e:
            pytest.fail(f"cluster did not start: {e}", pytrace=False)
        with tempfile.TemporaryDirectory(prefix="k8s-img-", dir="/tmp") as tmp:
            rootfs = build_busybox_rootfs(Path(tmp) / "rootfs")
            for name, cmd in (
                (PAUSE_IMAGE, ["/bin/sleep", "2147483647"]),
                (BUSYBOX_IMAGE, ["/bin/sh"]),
            ):
                c.import_image(build_image(rootfs, name, Path(tmp) / "image.tar", cmd=cmd).archive)
        # what a cluster admin does once the node installer has run
        c.kubectl("label", "node", NODE, "containerd-shim-lxcfs.io/installed=true")
        c.kubectl("apply", "-f", str(REPO / "deploy/runtimeclass.yaml"))
        c.apply(
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": "runc"},
                "handler": "runc",
            }
        )
        c.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": "default"},
                "automountServiceAccountToken": False,
            }
        )
        MEASURED["cluster start"] = (
            f"{time.monotonic() - t0:.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in c.timings.items())
            + ")"
        )
        yield c
    finally:
        forced = c.stop()
        for key, value in MEASURED.items():
            print(f"\n[k8s] {key}: {value}", end="")
        print()
    if forced:
        pytest.fail(f"cluster teardown had to force: {forced}", pytrace=False)


def pod(
    name: str,
    runtime_class: str,
    command: str,
    *,
    annotations: dict | None = None,
    restart: str = "Always",
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {
            "nodeName": NODE,  # no scheduler: bound by the creator
            "runtimeClassName": runtime_class,
            "hostNetwork": True,  # no CNI on this node
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "c",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", command],
                    "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
                }
            ],
        },
    }


def get_pod(c: Cluster, name: str) -> dict:
    return c.kubectl_json("get", "pod", name)


def wait_ready(c: Cluster, name: str, timeout: int = 180) -> dict:
    r = c.kubectl(
        "wait",
        "--for=condition=Ready",
        f"pod/{name}",
        f"--timeout={timeout}s",
        check=False,
        timeout=timeout + 30,
    )
    p = get_pod(c, name)
    assert r.returncode == 0, (
        f"pod {name} not Ready: {json.dumps(p.get('status'))[:1500]}\n"
        f"kubelet log:\n{c.daemons['kubelet'].tail(25)}"
    )
    return p


def container_id(p: dict) -> str:
    return p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]


def sandbox_id(c: Cluster, p: dict) -> str:
    ids = c.crictl(
        "pods", "-q", "--name", p["metadata"]["name"], "--namespace", "default", "--state", "ready"
    ).stdout.split()
    assert len(ids) == 1, ids
    return ids[0]


def pod_shims(c: Cluster, sandbox: str) -> list[tuple[int, str]]:
    assert c.containerd is not None
    return c.containerd.shim_processes(sandbox)


def logs(c: Cluster, name: str, *extra: str) -> list[str]:
    return c.kubectl("logs", name, *extra).stdout.splitlines()


def exec_text(c: Cluster, name: str, *cmd: str) -> str:
    return c.kubectl("exec", name, "--", *cmd).stdout


def delete_and_check_node_clean(c: Cluster, p: dict, sandbox: str) -> None:
    """`kubectl delete pod` and then nothing of the pod on the node: no sandbox, shim, socket,
    FUSE view, shim state, kubelet mounts or pod cgroups."""
    name, uid = p["metadata"]["name"], p["metadata"]["uid"]
    c.kubectl("delete", "pod", name, "--wait=true", "--timeout=90s", timeout=120)
    assert c.containerd is not None
    assert wait_until(lambda: not pod_shims(c, sandbox), 20, 0.2), pod_shims(c, sandbox)
    # stopped at once; removed by the kubelet's garbage collection (once a minute): see
    # test_node_empty_after_kubelet_gc
    assert sandbox not in c.crictl("pods", "-q", "--state", "ready").stdout.split()
    assert c.containerd.wait_no_leaks_for(sandbox) == []
    h = shim_hash(c.containerd.address, "k8s.io", sandbox)
    assert not [m for m in fuse_mounts() if h in m]
    assert not [m for m in c.kubelet_mounts() if uid in m]
    # the kubelet removes the pod cgroup asynchronously (its pod cleanup loop)
    assert wait_until(lambda: not c.pod_cgroups(uid), 60, 1), c.pod_cgroups(uid)


def shim_footprint_kb(c: Cluster, sandbox: str) -> tuple[int, int, int]:
    """(Rss, Pss, processes) of the pod's shim and its descendants that are not container
    processes (bench/footprint.py's method: /proc/<pid>/smaps_rollup)."""
    from bench.footprint import _children, rollup

    kids = _children()
    roots = [pid for pid, _ in pod_shims(c, sandbox)]
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if c.cgroup_root in cgroups:
            continue  # a container's process (pause, sh, sleep): not the shim's cost
        out.append(pid)
        todo += kids.get(pid, [])
    sums = [rollup(pid) for pid in out]
    return sum(r for r, _ in sums), sum(p for _, p in sums), len(out)


# --------------------------------------------------------------------------- tests


def test_runtimeclass_as_shipped(cluster):
    rc = cluster.kubectl_json("get", "runtimeclass", "lxcfs")
    assert rc["handler"] == "lxcfs"
    assert rc["overhead"]["podFixed"]["memory"]
    assert rc["scheduling"]["nodeSelector"] == {"containerd-shim-lxcfs.io/installed": "true"}


@pytest.mark.parametrize("handler", ["runc", "lxcfs"])
def test_pod_through_kubelet(cluster, handler):
    """logs, exec, CRI stats, a restart in the same pod shim, and a clean node after delete."""
    c = cluster
    name = f"view-{handler}"
    c.apply(pod(name, handler, f"{VIEW}; {SERVE}"))
    p = wait_ready(c, name)
    sandbox = sandbox_id(c, p)
    lxcfs = handler == "lxcfs"
    host_total = host_meminfo()["MemTotal"]

    # the RuntimeClass admission plugin charged the overhead and added the node selector
    if lxcfs:
        rc = c.kubectl_json("get", "runtimeclass", "lxcfs")
        assert p["spec"]["overhead"] == rc["overhead"]["podFixed"]
        assert p["spec"]["nodeSelector"] == rc["scheduling"]["nodeSelector"]
    inspect = json.loads(c.crictl("inspectp", sandbox).stdout)
    assert inspect["status"]["runtimeHandler"] == handler
    shims = pod_shims(c, sandbox)
    want = "containerd-shim-lxcfs-v2" if lxcfs else "containerd-shim-runc-v2"
    assert len(shims) == 1 and want in shims[0][1], shims

    # kubectl logs: what the container printed at start
    out = logs(c, name)
    if lxcfs:
        assert out[:2] == ["MemTotal:         131072 kB", "1"], out
    else:
        assert parse_meminfo(out[0])["MemTotal"] == host_total and out[1] == str(os.cpu_count())

    # kubectl exec reads the view (through the API server, the kubelet and CRI streaming)
    meminfo = parse_meminfo(exec_text(c, name, "cat", "/proc/meminfo"))
    assert meminfo["MemTotal"] == (LIMIT_KB if lxcfs else host_total)

    # the container's stats through CRI
    cid = container_id(p)
    stats = json.loads(c.crictl("stats", "-o", "json", "--id", cid).stdout)["stats"][0]
    assert int(stats["memory"]["workingSetBytes"]["value"]) > 0
    assert 0 < int(stats["memory"]["usageBytes"]["value"]) < 128 * 1024 * 1024
    assert int(stats["cpu"]["usageCoreNanoSeconds"]["value"]) > 0

    if lxcfs:
        rss, pss, n = shim_footprint_kb(c, sandbox)
        z = [rollup_kb(pid) for pid in zygote_pids()]
        MEASURED["lxcfs pod shim"] = (
            f"RSS {rss} kB, PSS {pss} kB ({n} process(es)); "
            f"zygote+spare (shared by all pods): RSS "
            f"{sum(r for r, _ in z)} kB, PSS {sum(q for _, q in z)} kB"
        )
    else:
        rss, pss, n = shim_footprint_kb(c, sandbox)
        MEASURED["runc pod shim"] = f"RSS {rss} kB, PSS {pss} kB ({n} process(es))"

    # PID 1 exits; restartPolicy Always: kubelet starts it again in the same sandbox and shim
    shim_pid = shims[0][0]
    # the exec itself may be SIGKILLed (137) with the PID namespace it runs in
    c.kubectl("exec", name, "--", "kill", "1", check=False)

    def restarted() -> dict | None:
        q = get_pod(c, name)
        st = q["status"]["containerStatuses"][0]
        return q if st["restartCount"] >= 1 and "running" in st["state"] else None

    q = wait_until(restarted, 120, 1)
    assert q, f"not restarted: {json.dumps(get_pod(c, name)['status'])[:1500]}"
    last = q["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 3
    assert container_id(q) != cid
    assert sandbox_id(c, q) == sandbox
    assert [pid for pid, _ in pod_shims(c, sandbox)] == [shim_pid]
    out = logs(c, name)
    if lxcfs:
        assert out[:2] == ["MemTotal:         131072 kB", "1"], out
        assert logs(c, name, "--previous")[:2] == ["MemTotal:         131072 kB", "1"]
    meminfo = parse_meminfo(exec_text(c, name, "cat", "/proc/meminfo"))
    assert meminfo["MemTotal"] == (LIMIT_KB if lxcfs else host_total)

    delete_and_check_node_clean(c, q, sandbox)


def rollup_kb(pid: int) -> tuple[int, int]:
    from bench.footprint import rollup

    return rollup(pid)


@pytest.mark.parametrize("handler", ["runc", "lxcfs"])
def test_container_over_its_limit_is_oomkilled(cluster, handler):
    """`tail` buffers /dev/zero (no newline ever) until the memory cgroup kills it."""
    c = cluster
    name = f"oom-{handler}"
    c.apply(pod(name, handler, "exec tail /dev/zero", restart="Never"))

    def terminated() -> dict | None:
        st = get_pod(c, name)["status"].get("containerStatuses") or [{}]
        return st[0].get("state", {}).get("terminated")

    t = wait_until(terminated, 180, 1)
    assert t, f"not terminated: {json.dumps(get_pod(c, name)['status'])[:1500]}"
    assert t["reason"] == "OOMKilled", t
    assert t["exitCode"] == 137, t
    sandbox = c.crictl("pods", "-q", "--name", name).stdout.split()
    c.kubectl("delete", "pod", name, "--wait=true", "--timeout=90s", timeout=120)
    for s in sandbox:
        assert wait_until(lambda s=s: not pod_shims(c, s), 20, 0.2)


@pytest.mark.parametrize(
    ("annotation", "meminfo_view", "cpuinfo_view"),
    [
        ({"io.containerd.lxcfs.files": "cpuinfo"}, False, True),
        ({"io.containerd.lxcfs.files": "meminfo"}, True, False),
        ({"io.containerd.lxcfs.disable": "true"}, False, False),
    ],
    ids=["files=cpuinfo", "files=meminfo", "disable"],
)
def test_pod_annotations_reach_the_shim(cluster, annotation, meminfo_view, cpuinfo_view):
    c = cluster
    name = "ann-" + "-".join(v for v in annotation.values()).replace(".", "-")
    c.apply(pod(name, "lxcfs", SERVE, annotations=annotation))
    p = wait_ready(c, name)
    sandbox = sandbox_id(c, p)
    total = parse_meminfo(exec_text(c, name, "cat", "/proc/meminfo"))["MemTotal"]
    cpus = exec_text(c, name, "grep", "-c", "^processor", "/proc/cpuinfo").strip()
    assert total == (LIMIT_KB if meminfo_view else host_meminfo()["MemTotal"])
    assert cpus == ("1" if cpuinfo_view else str(os.cpu_count()))
    delete_and_check_node_clean(c, p, sandbox)


def test_node_empty_after_kubelet_gc(cluster):
    """Last: once the kubelet's garbage collection ran, CRI holds no sandbox or container of
    the deleted pods, and no shim, FUSE view or pod cgroup is left."""
    c = cluster
    assert c.kubectl("get", "pods", "-o", "name").stdout.strip() == ""

    def empty() -> bool:
        return (
            not c.crictl("pods", "-q").stdout.split()
            and not c.crictl("ps", "-a", "-q").stdout.split()
        )

    assert wait_until(empty, 150, 2), (c.crictl("pods").stdout, c.crictl("ps", "-a").stdout)
    assert c.containerd is not None
    assert c.containerd.shim_processes() == []
    assert c.containerd.containers() == []
    assert not [m for m in fuse_mounts() if m.startswith(str(c.containerd.state))]
    assert c.pod_cgroups() == []
    assert [m for m in c.kubelet_mounts() if m != str(c.kubelet_dir)] == []
