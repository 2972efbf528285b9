"""The stdlib-only CLI paths: flags as containerd passes them, socket naming, wire encoding."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from shim import identity, wire
from shim.cli import _parser


def test_go_style_flags() -> None:
    args = _parser().parse_args(
        ["-namespace", "k8s.io", "--address=/run/containerd/containerd.sock",
         "-publish-binary", "/usr/bin/containerd", "-id", "abc", "-debug", "start"])
    assert (args.namespace, args.address, args.id, args.debug, args.action) == (
        "k8s.io", "/run/containerd/containerd.sock", "abc", True, "start")


def test_socket_path_matches_containerd_shims() -> None:
    digest = hashlib.sha256(b"/run/containerd/containerd.sock/default/c1").hexdigest()
    assert identity.socket_path("/run/containerd/containerd.sock", "default", "c1") == (
        f"/run/containerd/s/{digest}")


def test_group_prefers_pod_annotations() -> None:
    assert identity.group_id("c1", {}) == "c1"
    assert identity.group_id("c1", {"io.kubernetes.cri.sandbox-id": "pod"}) == "pod"
    assert identity.group_id("c1", {"io.containerd.lxcfs.v2.group": "g",
                                     "io.kubernetes.cri.sandbox-id": "pod"}) == "g"


def test_delete_response_encoding_matches_betterproto() -> None:
    from protos.gen.containerd.task import v2 as api

    raw = wire.delete_response(4242, 137, 1_700_000_000, 5)
    parsed = api.DeleteResponse().parse(raw)
    assert (parsed.pid, parsed.exit_status) == (4242, 137)
    assert int(parsed.exited_at.timestamp()) == 1_700_000_000


def test_unpack_any() -> None:
    from betterproto.lib.google.protobuf import Any

    raw = bytes(Any(type_url="containerd.runc.v1.Options", value=b"\x32\x04runc"))
    assert wire.unpack_any(raw) == ("containerd.runc.v1.Options", b"\x32\x04runc")


def test_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "shim", "-v"], capture_output=True, text=True,
                         check=True).stdout
    assert identity.__version__ in out and identity.RUNTIME_NAME in out
    out = subprocess.run([sys.executable, "-m", "shim", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "start" in out and "delete" in out
