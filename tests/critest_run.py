"""critest (Kubernetes' CRI validation suite) against containerd's CRI, runtime handler by choice.

    python tests/critest_run.py --handler lxcfs          # the full suite (minus SKIPS)
    python tests/critest_run.py --handler runc --focus 'Container|PodSandbox'

(run from the repository root with the venv's python, as root; `--help` lists the options).
It starts a private containerd of the newest matrix release with CRI configured as a node's
(tests/cri_node.py, install.sh's drop-in), a bridge CNI network from Debian's
containernetworking-plugins (own bridge, IPAM state in the tmp dir; removed afterwards), and a
loopback registry (tests/oci_registry.py) that serves the images critest pulls, built from the
host's busybox. containerd's `hosts.toml` (`certs.d/_default`) sends every registry host
(gcr.io, registry.k8s.io, ...) to it, so images keep the exact names critest uses and every
pull goes through containerd's real resolver and fetcher. The JUnit report gives per-case
results.

SKIPS lists what is skipped and why: cases that need the internet or images this machine cannot
build, and features no runtime handler on this host offers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer_builds as peers
from cri_images import ImageBlobs, image_blobs, layer_tar
from cri_node import PAUSE_IMAGE, CriContainerd
from harness import NEWEST, build_busybox_rootfs
from oci_registry import Registry, hosts_toml, serve

CRITEST = peers.CRI_TOOLS.path("critest")
CNI_BIN = "/usr/lib/cni"  # Debian's containernetworking-plugins
#: per run, so a CI run and a manual one can overlap (names <= 15 chars, distinct subnets)
BRIDGE = f"lxcri{os.getpid() % 100000}"
SUBNET = f"10.233.{os.getpid() % 250}.0/24"

#: regex -> why it is skipped (for both handlers; the README lists them)
SKIPS: dict[str, str] = {
    r"public image with digest": (
        "pulls test-image-digest@sha256:9700f9…, a digest only the "
        "real gcr.io image has (no internet; ours cannot match it)"
    ),
    r"Networking|port ?forward|hostport|DNS|[Ww]eb ?server|should support network": (
        "nginx web-server image and host ports/DNS: no image to build, no iptables here"
    ),
    r"support HostPID|support PodPID|support ContainerPID": (
        "need e2e-test-images/nginx (its master process and /var/run/nginx.pid)"
    ),
    r"support HostIpc": "`ipcs -m` in the container: Debian's busybox-static has no ipcs",
    r"Multiple Containers": "the pod's second container is the nginx web server",
    r"NoNewPrivs": "needs e2e-test-images/nonewprivs (a setuid binary that prints its euid)",
    r"support MaskedPaths": (
        "Debian's busybox sh runs `ls` in-process (standalone shell), so "
        "the masked /bin/ls is never executed"
    ),
    r"AppArmor|SELinux|seccomp.*localhost|NRI": (
        "host features not configured here (AppArmor/SELinux off, no seccomp profiles dir, "
        "no NRI socket)"
    ),
    r"[Ii]mage [Vv]olume": "image volumes: need a second real image with a known layout",
}


@dataclass
class Result:
    handler: str
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: str = ""

    def summary(self) -> str:
        return (
            f"critest handler={self.handler}: {len(self.passed)} passed, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped in {self.seconds:.0f}s"
        )


def registry_images(rootfs: Path) -> Registry:
    """What critest pulls (pkg/validate/consts.go of cri-tools v1.37.0), from one busybox layer."""
    layer = layer_tar(rootfs)
    cmd = ["/bin/sh"]

    def img(name: str, user: str = "") -> ImageBlobs:
        # the name in the config: each repository is its own image (own id), as on gcr.io
        env = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"CRITEST_IMAGE={name}",
        ]
        return image_blobs(layer=layer, cmd=cmd, user=user, env=env)

    p = "k8s-staging-cri-tools/"
    users = {
        "test-image-user-uid": "1002",
        "test-image-user-username": "www-data",
        "test-image-user-uid-group": "1003:1003",
        "test-image-user-username-group": "www-data:www-data",
        "test-image-predefined-group": "1000",
    }
    images = {p + name: {"*": img(p + name, user)} for name, user in users.items()}
    # registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 are one image (the same repository
    # path, so the same default) in "same image from different registries"
    return Registry(images, default=img)


def prepare_rootfs(dest: Path) -> Path:
    root = build_busybox_rootfs(dest)
    # users/groups of cri-tools' images/image-user and image-predefined-group
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/tmp:/bin/sh\n"
        "user:x:1000:1000:user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
    )
    (root / "etc" / "group").write_text(
        "root:x:0:\nwww-data:x:33:\nuser:x:1000:\ngroup-defined-in-image:x:50000:user\n"
        "nogroup:x:65534:\n"
    )
    # critest's checkSleepCmd runs `pgrep sleep`, and Debian's busybox-static has no pgrep:
    # busybox's pidof answers the same for a plain process name
    pgrep = root / "bin" / "pgrep"
    pgrep.write_text('#!/bin/sh\n# stand-in: pgrep NAME (plain names only)\nexec pidof "$1"\n')
    pgrep.chmod(0o755)
    # MaskedPaths masks /bin/ls: as in the busybox image it must be a hard link, not a symlink
    # (runc would mask the symlink's target, /bin/busybox, and with it every applet)
    (root / "bin" / "ls").unlink()
    os.link(root / "bin" / "busybox", root / "bin" / "ls")
    return root


def write_cni(node: CriContainerd) -> None:
    conf = {
        "cniVersion": "1.0.0",
        "name": "lxcfs-critest",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.tmpdir / "ipam"),
                    "ranges": [[{"subnet": SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "loopback"},
        ],
    }
    (node.tmpdir / "cni" / "net.d" / "10-critest.conflist").write_text(json.dumps(conf))
    bin_dir = node.tmpdir / "cni" / "bin"
    for plugin in ("bridge", "host-local", "loopback"):
        (bin_dir / plugin).symlink_to(f"{CNI_BIN}/{plugin}")


def parse_junit(path: Path, handler: str) -> Result:
    res = Result(handler, report=str(path))
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if name.startswith(("[BeforeSuite]", "[AfterSuite]", "[SynchronizedBeforeSuite]")):
            if case.find("failure") is not None or case.find("error") is not None:
                res.failed[name] = "suite setup failed"
            continue
        name = name.removeprefix("[It] ")
        if case.get("status") == "skipped" or case.find("skipped") is not None:
            res.skipped.append(name)
        elif (bad := case.find("failure")) is not None or (bad := case.find("error")) is not None:
            text = (bad.get("message") or bad.text or "failed").strip() or "failed"
            res.failed[name] = text.splitlines()[0][:300]
        else:
            res.passed.append(name)
    return res


def run(
    handler: str,
    focus: str = "",
    timeout: float = 3600,
    report_dir: Path | None = None,
) -> Result:
    missing = NEWEST.missing() + ([str(CRITEST)] if not os.access(CRITEST, os.X_OK) else [])
    if missing:
        raise RuntimeError(
            f"not installed: {missing}: install.sh --test builds them "
            "(tests/peer_builds.py, needs Go)"
        )
    if not os.access(f"{CNI_BIN}/bridge", os.X_OK):
        raise RuntimeError(
            f"{CNI_BIN}/bridge missing: apt-get install containernetworking-plugins"
            " (install.sh --test does)"
        )
    node = CriContainerd(NEWEST)
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="critest-", dir="/tmp") as tmp:
            registry = registry_images(prepare_rootfs(Path(tmp) / "rootfs"))
            with serve(registry) as host:
                # every registry host (gcr.io, registry.k8s.io, ...) is served by ours: the
                # images keep the exact names critest pulls, creates and lists
                hosts_toml(node.registry_dir, "_default", host)
                node.tmpdir.joinpath("cni", "bin").mkdir(parents=True, exist_ok=True)
                node.tmpdir.joinpath("cni", "net.d").mkdir(parents=True, exist_ok=True)
                write_cni(node)
                node.start()
                # the pinned sandbox image; not `sleep`: with a shared pod PID namespace
                # critest's `pgrep sleep` must find only the sleep it started
                node.import_images([(PAUSE_IMAGE, ["/bin/tail", "-f", "/dev/null"])])
                out = report_dir or Path(tmp) / "report"
                out.mkdir(parents=True, exist_ok=True)
                endpoint = f"unix://{node.address}"
                cmd = [
                    str(CRITEST),
                    f"-runtime-endpoint={endpoint}",
                    f"-image-endpoint={endpoint}",
                    f"-runtime-handler={handler}",
                    f"-ginkgo.junit-report={out}/junit-{handler}.xml",
                    "-ginkgo.no-color",
                    "-ginkgo.timeout=2h",
                    *(f"-ginkgo.skip={rx}" for rx in SKIPS),
                    *([f"-ginkgo.focus={focus}"] if focus else []),
                ]
                with open(out / f"critest-{handler}.log", "wb") as log:
                    subprocess.run(
                        cmd,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        timeout=timeout,
                        stdin=subprocess.DEVNULL,
                        cwd=out,
                        env={**node.env, "HOME": str(node.tmpdir)},
                    )
                junit = next(out.glob("junit*.xml"), None)
                if junit is None:
                    tail = (out / f"critest-{handler}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"critest wrote no JUnit report; log tail:\n{tail}")
                res = parse_junit(junit, handler)
                if report_dir is None:
                    res.report = ""
    finally:
        with contextlib.suppress(Exception):
            node.cleanup_all()
        node.stop()
        node.kill_leftover_shims()
        node.remove_tmpdir()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=30, check=False)
    res.seconds = time.monotonic() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--handler",
        action="append",
        default=[],
        help="runtime handler (repeatable; default: runc and lxcfs)",
    )
    ap.add_argument("--focus", default="", help="ginkgo focus regex (default: all cases)")
    ap.add_argument("--report-dir", type=Path, help="keep JUnit reports and logs here")
    args = ap.parse_args(argv)
    results = [
        run(h, args.focus, report_dir=args.report_dir and args.report_dir / h)
        for h in (args.handler or ["runc", "lxcfs"])
    ]
    for res in results:
        print(res.summary())
        for name, why in sorted(res.failed.items()):
            print(f"  FAIL {name}: {why}")
    if len(results) == 2:
        base, lx = results
        regress = sorted(set(base.passed) - set(lx.passed))
        print(f"passing with {base.handler} but not with {lx.handler}: {len(regress)}")
        for name in regress:
            print(f"  {name}")
        return 1 if regress else 0
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
