"""The stdlib-only CLI paths: flags as containerd passes them, socket naming, wire encoding."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from shim import identity, wire
from shim.entry.args import parse


def test_go_style_flags() -> None:
    args = parse(
        [
            "-namespace",
            "k8s.io",
            "--address=/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "abc",
            "-debug",
            "start",
        ]
    )
    assert (args.namespace, args.address, args.id, args.debug, args.action) == (
        "k8s.io",
        "/run/containerd/containerd.sock",
        "abc",
        True,
        "start",
    )


def test_socket_path_matches_containerd_shims() -> None:
    digest = hashlib.sha256(b"/run/containerd/containerd.sock/default/c1").hexdigest()
    assert identity.socket_path("/run/containerd/containerd.sock", "default", "c1") == (
        f"/run/containerd/s/{digest}"
    )


def test_group_prefers_pod_annotations() -> None:
    assert identity.group_id("c1", {}) == "c1"
    assert identity.group_id("c1", {"io.kubernetes.cri.sandbox-id": "pod"}) == "pod"
    assert (
        identity.group_id(
            "c1", {"io.containerd.lxcfs.v2.group": "g", "io.kubernetes.cri.sandbox-id": "pod"}
        )
        == "g"
    )


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
    out = subprocess.run(
        [sys.executable, "-m", "shim", "-v"], capture_output=True, text=True, check=True
    ).stdout
    assert identity.__version__ in out and identity.RUNTIME_NAME in out
    out = subprocess.run(
        [sys.executable, "-m", "shim", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "start" in out and "delete" in out


# --------------------------------------------------------------------------- task API setting


def _runtimeoptions(*, body: str = "", path: str = "") -> bytes:
    from betterproto.lib.google.protobuf import Any

    from protos.gen.runtimeoptions import v1 as runtimeoptions

    opts = runtimeoptions.Options(config_path=path, config_body=body.encode())
    return bytes(Any(type_url="runtimeoptions.v1.Options", value=bytes(opts)))


def test_task_api_default_env_and_options(tmp_path) -> None:
    import pytest

    from shim import options
    from shim.entry import config

    def resolve(raw: bytes, env: dict[str, str], **announced) -> str:
        mode, _note = config.resolve(options.decode(raw), env, **announced)
        return mode

    # no setting: the best API the starting containerd announces
    assert resolve(b"", {}) == config.V2
    assert resolve(b"", {}, bootstrap=True, containerd_version="v2.4.2") == config.V3_TTRPC
    assert resolve(b"", {config.ENV: "v3-ttrpc"}) == config.V3_TTRPC
    assert resolve(b"", {config.ENV: "v2"}, bootstrap=True) == config.V2  # the operator wins
    body = _runtimeoptions(body='SystemdCgroup = true\ntask_api = "v3-ttrpc"\n')
    assert resolve(body, {}) == config.V3_TTRPC
    (tmp_path / "shim.toml").write_text('task_api = "v3-ttrpc"\n')
    by_path = _runtimeoptions(path=str(tmp_path / "shim.toml"))
    assert resolve(by_path, {}) == config.V3_TTRPC
    # per-runtime options beat the shim-wide environment; config_body beats config_path
    assert resolve(body, {config.ENV: "v2"}) == config.V3_TTRPC
    both = _runtimeoptions(body='task_api = "v2"\n', path=str(tmp_path / "shim.toml"))
    assert resolve(both, {config.ENV: "v3-ttrpc"}) == config.V2
    # options without the key and runc Options leave the choice open
    assert (
        resolve(_runtimeoptions(body="BinaryName = 'runc'\n"), {config.ENV: "v3-ttrpc"})
        == config.V3_TTRPC
    )
    runc = bytes(
        wire.bytes_field(1, b"containerd.runc.v1.Options")
        + wire.bytes_field(2, wire.bytes_field(6, b"runc"))
    )
    assert resolve(runc, {}) == config.V2
    for bad_options, env in (
        (b"", {config.ENV: "v3"}),
        (_runtimeoptions(body="task_api = 3\n"), {}),
        (_runtimeoptions(body="task_api = [\n"), {}),
        (_runtimeoptions(path=str(tmp_path / "nope.toml")), {}),
        (b"\xff\x00garbage", {}),
    ):
        with pytest.raises(ValueError):
            resolve(bad_options, env)


def test_grpc_is_never_handed_to_a_containerd_known_to_drop_it() -> None:
    """containerd 2.0-2.4 close a gRPC shim at once; 1.6/1.7 know no v3 at all."""
    from shim.entry import config

    grpc = {config.ENV: config.V3_GRPC}
    mode, note = config.resolve({}, grpc)
    assert mode == config.V2 and "before 2.3" in note and "IDLE" in note
    for version in ("v2.3.4", "v2.4.2", "2.4.0-rc.1", "garbage", ""):
        mode, note = config.resolve({}, grpc, bootstrap=True, containerd_version=version)
        assert mode == config.V3_TTRPC and "grpcDialContext" in note, version
    assert config.resolve({}, grpc, bootstrap=True, containerd_version="v2.5.0") == (
        config.V3_GRPC,
        "",
    )


def test_start_output_per_task_api() -> None:
    """What containerd's parseStartResponse accepts: plain ttrpc, JSON, or BootstrapResult."""
    import json

    from protos.gen.containerd.runtime.bootstrap.v1 import BootstrapResult
    from shim.entry import config

    path = "/run/containerd/s/abc"
    assert config.start_output(config.V2, path) == b"unix:///run/containerd/s/abc\n"
    assert json.loads(config.start_output(config.V3_TTRPC, path)) == {
        "version": 3,
        "address": "unix:///run/containerd/s/abc",
        "protocol": "ttrpc",
    }
    # gRPC: containerd 2.x dials the address with net.Dial("unix", ...): a bare path
    assert json.loads(config.start_output(config.V3_GRPC, path)) == {
        "version": 3,
        "address": "/run/containerd/s/abc",
        "protocol": "grpc",
    }
    for mode, want in (
        (config.V2, (2, "unix://" + path, "ttrpc")),
        (config.V3_TTRPC, (3, "unix://" + path, "ttrpc")),
        (config.V3_GRPC, (3, path, "grpc")),
    ):
        raw = config.start_output(mode, path, bootstrap=True)
        got = BootstrapResult().parse(raw)
        assert (got.version, got.address, got.protocol) == want
        assert bytes(got) == raw


# --------------------------------------------------------------------------- -info


def _info(stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`<shim> -info` exactly as containerd 2.x runs it: only the flag, no bundle cwd."""
    import os

    environ = {k: v for k, v in os.environ.items() if k != "CONTAINERD_SHIM_LXCFS_TASK_API"}
    return subprocess.run(
        [sys.executable, "-m", "shim", "-info"],
        input=stdin,
        cwd="/",
        capture_output=True,
        env={**environ, **(env or {})},
        timeout=30,
    )


def test_info_prints_runtime_info_with_runc_features() -> None:
    import json

    from protos.gen.containerd.types import RuntimeInfo
    from shim.entry import info

    done = _info()
    assert done.returncode == 0, done.stderr
    parsed = RuntimeInfo().parse(done.stdout)
    assert parsed.name == identity.RUNTIME_NAME
    assert parsed.version.version == identity.__version__
    assert parsed.features.type_url == info.FEATURES_TYPE
    runc_features = subprocess.run(["runc", "features"], capture_output=True, check=True)
    assert json.loads(parsed.features.value) == json.loads(runc_features.stdout)
    assert parsed.annotations[info.ANNOTATION_TASK_API] == "v3-ttrpc"  # what 2.3+ gets
    assert parsed.annotations[info.ANNOTATION_RUNC].endswith("/runc")
    assert not parsed.options.type_url  # no options in, none echoed


def test_info_echoes_options_and_reports_the_task_api() -> None:
    from protos.gen.containerd.types import RuntimeInfo
    from shim.entry import info

    options = _runtimeoptions(body='task_api = "v3-grpc"\n')
    done = _info(options)
    assert done.returncode == 0, done.stderr
    parsed = RuntimeInfo().parse(done.stdout)
    assert bytes(parsed.options) == options
    # only containerd 2.x runs -info, and 2.0-2.4 drop gRPC shims: v3 ttrpc, and why
    assert parsed.annotations[info.ANNOTATION_TASK_API] == "v3-ttrpc"
    assert "grpcDialContext" in parsed.annotations[info.ANNOTATION_TASK_API_NOTE]
    done = _info(env={"CONTAINERD_SHIM_LXCFS_TASK_API": "v3-ttrpc"})
    assert RuntimeInfo().parse(done.stdout).annotations[info.ANNOTATION_TASK_API] == "v3-ttrpc"


def test_info_fails_without_the_runc_binary() -> None:
    """As the Go runc shim: a runtime that cannot run containers must not look healthy."""
    runc_options = wire.bytes_field(1, b"containerd.runc.v1.Options") + wire.bytes_field(
        2, wire.bytes_field(6, b"no-such-runc-binary")
    )
    done = _info(runc_options)
    assert done.returncode == 1 and not done.stdout
    assert b"no-such-runc-binary" in done.stderr
