"""A private containerd with its CRI plugin configured as a node's, for test_cri, crictl, critest.

The config sets the sandbox image, overlayfs and empty CNI dirs in the release's own format
(version 2 names `io.containerd.grpc.v1.cri` for 1.6/1.7; version 3 for 2.x, where CRI is
split into `io.containerd.cri.v1.images`, `io.containerd.cri.v1.runtime` and the streaming
server `io.containerd.grpc.v1.cri`), and imports the drop-in that `install.sh
--containerd-config-only` writes, i.e. exactly what a node gets. Images are built from the host's
busybox-static (tests/cri_images.py) and imported into `k8s.io` with `ctr images import`; pods
use the host network, so no CNI plugin is needed.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cri_images import build_image
from harness import (
    NEWEST,
    ContainerdRelease,
    HarnessError,
    PrivateContainerd,
    build_busybox_rootfs,
)

REPO = Path(__file__).resolve().parent.parent
PAUSE_IMAGE = "registry.invalid/lxcfs-test/pause:1"
BUSYBOX_IMAGE = "registry.invalid/lxcfs-test/busybox:1"

CRI_CONFIG_V2 = """
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # this host refuses negative oom_score_adj (CRI gives sandboxes -998): clamp to ours
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registry}"
"""

CRI_CONFIG_V3 = """
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{registry}"
[plugins."io.containerd.cri.v1.runtime"]
  # this host refuses negative oom_score_adj (CRI gives sandboxes -998): clamp to ours
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
{runtimes}
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni}/bin"]
    conf_dir = "{cni}/net.d"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


class CriContainerd(PrivateContainerd):
    """PrivateContainerd with CRI on, plus install.sh's drop-in imported from conf.d.

    The one CRI containerd of the tests (test_cri, crictl, critest, the bootstrap CRI test and
    the Kubernetes node). `release`: the containerd of the matrix to run (default: the newest).
    `registry_dir`: containerd's `hosts.toml` directory (certs.d layout) for image pulls, e.g. a
    loopback registry; empty by default (no registry reachable). `runtimes`: TOML lines of
    handlers of the test's own, put in the runtime section (containerd 2.x); with
    `install=False`, install.sh's drop-in is neither written nor imported.
    """

    def __init__(
        self,
        release: ContainerdRelease = NEWEST,
        *,
        start_timeout: float = 60.0,
        runtimes: str = "",
        install: bool = True,
    ) -> None:
        super().__init__(
            namespace="k8s.io",
            cri=True,
            start_timeout=start_timeout,
            containerd=release.containerd,
            ctr=release.ctr,
        )
        self.release = release
        self.registry_dir = self.tmpdir / "certs.d"
        self.runtimes = runtimes
        self.install = install
        self.install_output = ""

    def config_text(self) -> str:
        text = super().config_text()
        if self.major >= 2:
            # NRI's socket is node-global (/var/run/nri/nri.sock): other containerds use it
            text = text.replace(
                "disabled_plugins = []", 'disabled_plugins = ["io.containerd.nri.v1.nri"]', 1
            )
        if self.install:
            # top-level `imports` next to `version`, the CRI tables at the end
            version_line = text[text.index("\nversion = ") + 1 :].split("\n", 1)[0] + "\n"
            imports = f'{version_line}imports = ["{self.tmpdir}/conf.d/*.toml"]\n'
            text = text.replace(version_line, imports, 1)
        cri = CRI_CONFIG_V3 if self.major >= 2 else CRI_CONFIG_V2
        return text + cri.format(
            pause=PAUSE_IMAGE,
            cni=self.tmpdir / "cni",
            registry=self.registry_dir,
            runtimes=self.runtimes,
        )

    def start(self) -> CriContainerd:
        for d in ("conf.d", "cni/bin", "cni/net.d", "certs.d"):
            (self.tmpdir / d).mkdir(parents=True, exist_ok=True)
        if not self.install:
            super().start()
            return self
        self.config_path.write_text(self.config_text())
        r = subprocess.run(
            ["bash", str(REPO / "install.sh"), "--containerd-config-only"],
            env={
                **self.env,
                "CONTAINERD_CONFIG_DIR": str(self.tmpdir),
                "CONTAINERD": self.containerd_bin,
            },
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            raise HarnessError(
                f"install.sh --containerd-config-only failed:\n{r.stdout}\n{r.stderr}"
            )
        self.install_output = r.stdout
        # PrivateContainerd.start() writes config_text() again: keep install.sh's result
        written = self.config_path.read_text()
        self.config_text = lambda: written  # type: ignore[method-assign]
        super().start()
        return self

    def import_images(
        self,
        images: Iterable[tuple[str, list[str]]] = (
            (PAUSE_IMAGE, ["/bin/sleep", "2147483647"]),
            (BUSYBOX_IMAGE, ["/bin/sh"]),
        ),
    ) -> None:
        """Build `(name, cmd)` images from the host's busybox and `ctr images import` them."""
        with tempfile.TemporaryDirectory(prefix="cri-img-", dir="/tmp") as tmp:
            rootfs = build_busybox_rootfs(Path(tmp) / "rootfs")
            for name, cmd in images:
                image = build_image(rootfs, name, Path(tmp) / "image.tar", cmd=cmd)
                self.ctr("images", "import", str(image.archive), check=True, timeout=120)
