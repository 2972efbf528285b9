"""`containerd-shim-lxcfs-v2 check` on this node: real runc, real /dev/fuse, and containerd's
own `config dump` of the node's configuration (1.6 from Debian; 2.x from the peer cache)."""

from __future__ import annotations

import os
import subprocess

import peer_builds as peers
import pytest
from harness import LXCFS_SHIM, find_shim_bin_dir

PEER_CONTAINERD_2 = peers.CONTAINERD_2.path("containerd")


def _check(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    bin_dir = find_shim_bin_dir()
    if bin_dir is None:
        pytest.fail(f"{LXCFS_SHIM} is not installed: ./install.sh --test", pytrace=False)
    return subprocess.run(
        [os.path.join(bin_dir, LXCFS_SHIM), "check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _verdicts(out: str) -> dict[str, str]:
    """{what: level} from the `  level  what: detail` lines."""
    found = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if line.startswith("  ") and len(parts) == 2:
            found[parts[1].split(":", 1)[0]] = parts[0]
    return found


def test_check_passes_on_this_installed_node():
    r = _check()
    assert r.returncode == 0, r.stdout + r.stderr
    v = _verdicts(r.stdout)
    for what in (
        "shim install",
        "/dev/fuse",
        "runc",
        "cgroups",
        "containerd",
        "CRI handler lxcfs",
        "annotation passthrough",
        "runc seccomp notify",
    ):
        assert v.get(what) == "ok", (what, r.stdout)
    assert "summary: " in r.stdout and ", 0 failed" in r.stdout


def test_check_reads_containerd_2x_config(tmp_path):
    """containerd 2.x migrates the node's version 2 file: the handler is found in
    io.containerd.cri.v1.runtime."""
    if not PEER_CONTAINERD_2.exists():
        pytest.fail(
            f"{PEER_CONTAINERD_2} missing: install.sh --test installs the peers", pytrace=False
        )
    r = _check({"CONTAINERD": str(PEER_CONTAINERD_2)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "io.containerd.cri.v1.runtime runtimes.lxcfs -> io.containerd.lxcfs.v2" in r.stdout


def test_check_warns_when_the_handler_is_missing(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("version = 2\n")
    r = _check({"CONTAINERD": f"containerd --config {cfg}"})
    assert r.returncode == 0, r.stdout + r.stderr  # ctr still works: a warning, not a failure
    assert _verdicts(r.stdout)["CRI handler lxcfs"] == "warn", r.stdout


def test_check_fails_without_runc(tmp_path):
    """A node without runc cannot run any container of ours: FAIL and exit status 1."""
    path = [
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if p and not os.path.exists(os.path.join(p, "runc"))
    ]
    r = _check({"PATH": os.pathsep.join(path)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert _verdicts(r.stdout)["runc"] == "FAIL", r.stdout
    assert "cannot run io.containerd.lxcfs.v2" in r.stdout
