"""install.sh's containerd drop-in, checked by each containerd release of the matrix itself.

`install.sh --containerd-config-only` with CONTAINERD=<that release's binary> and a config dir
of our own: the node's CRI settings (written in the release's own config format) must survive,
the handler `lxcfs` must appear in `containerd config dump`, with the runc handler's options.
containerd 1.6/1.7 replace a whole plugin table per imported file (the drop-in copies the CRI
section); 2.x merges per key (the drop-in holds only the handler, under
`io.containerd.cri.v1.runtime`, in the dump's own config version: 3, or 4 for 2.4).
No containerd is started: `config dump` is all install.sh runs.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
from harness import LXCFS_RUNTIME, binary_version

REPO = Path(__file__).resolve().parent.parent

NODE_CONFIG_V2 = """version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "example.invalid/pause:9"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true
"""

NODE_CONFIG_V3 = """version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "example.invalid/pause:9"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = true
"""


def _dump(containerd: str, cfg: Path) -> dict:
    r = subprocess.run(
        [containerd, "--config", str(cfg), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    return tomllib.loads(r.stdout)


@pytest.mark.parametrize("fresh", [False, True], ids=["node-config", "no-config"])
def test_dropin_validated_by_containerd(containerd_release, tmp_path, fresh):
    binary = containerd_release.containerd
    major = binary_version(binary)[0]
    cfg = tmp_path / "config.toml"
    if not fresh:
        cfg.write_text(NODE_CONFIG_V3 if major >= 2 else NODE_CONFIG_V2)
    r = subprocess.run(
        ["bash", str(REPO / "install.sh"), "--containerd-config-only"],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CONTAINERD": binary,
            "CONTAINERD_CONFIG_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated" in r.stdout, r.stdout

    dump = _dump(binary, cfg)
    plugins = dump["plugins"]
    if major >= 2:
        assert dump["version"] >= 3
        runtime = plugins["io.containerd.cri.v1.runtime"]
        sandbox = plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
        dropin = (tmp_path / "conf.d" / "lxcfs.toml").read_text()
        assert "io.containerd.grpc.v1.cri" not in dropin, "2.x merges per key: handler only"
        assert f"version = {dump['version']}" in dropin
    else:
        runtime = plugins["io.containerd.grpc.v1.cri"]
        sandbox = runtime["sandbox_image"]
    handlers = runtime["containerd"]["runtimes"]
    assert handlers["lxcfs"]["runtime_type"] == LXCFS_RUNTIME
    assert handlers["lxcfs"]["pod_annotations"] == ["io.containerd.lxcfs.*"]
    assert handlers["runc"]["runtime_type"] == "io.containerd.runc.v2"
    if not fresh:
        assert sandbox == "example.invalid/pause:9", "the node's CRI settings were lost"
        assert handlers["runc"]["options"]["SystemdCgroup"] is True
        assert handlers["lxcfs"]["options"]["SystemdCgroup"] is True, "runc's options copied"
    # idempotent: a second run changes nothing
    again = subprocess.run(
        ["bash", str(REPO / "install.sh"), "--containerd-config-only"],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CONTAINERD": binary,
            "CONTAINERD_CONFIG_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr
