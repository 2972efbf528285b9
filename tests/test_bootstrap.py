"""start's stdin in every shape containerd writes it, and what start does with bad input.

Unit tests (the encoder is betterproto from our .proto files, the decoder the stdlib one in
shim/entry/bootstrap.py and shim/options.py); the real containerd 2.4.2/1.7/1.6 runs are in
tests/test_e2e_bootstrap.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys

import pytest
from betterproto.lib.google.protobuf import Any as AnyMsg

from protos.gen.containerd.linux import runc as legacy
from protos.gen.containerd.runc import v1 as runc_opts
from protos.gen.containerd.runtime.bootstrap import v1 as boot
from protos.gen.runtimeoptions import v1 as runtimeoptions
from shim import options
from shim.entry import bootstrap
from shim.task.service import RuncOptions
from shim.transport.errors import RpcError

ID, NS = "c1", "default"


def _any(type_url: str, msg) -> AnyMsg:
    return AnyMsg(type_url=type_url, value=bytes(msg))


def _params(*extensions: AnyMsg, **kw) -> bytes:
    fields = {
        "instance_id": ID,
        "namespace": NS,
        "containerd_version": "v2.4.2",
        "log_level": boot.LogLevel.DEBUG,
        "containerd_ttrpc_address": "/run/containerd/containerd.sock.ttrpc",
        "containerd_grpc_address": "/run/containerd/containerd.sock",
        "containerd_binary": "/usr/bin/containerd",
        "socket_dir": "/run/containerd/s",
    }
    fields.update(kw)
    return bytes(
        boot.BootstrapParams(extensions=[boot.Extension(value=e) for e in extensions], **fields)
    )


RUNC = _any(
    options.RUNC,
    runc_opts.Options(
        shim_cgroup="/pods", io_uid=1000, io_gid=1001, binary_name="runc", no_new_keyring=True
    ),
)
LEGACY = _any(
    options.LEGACY,
    legacy.CreateOptions(shim_cgroup="/pods", io_uid=100000, io_gid=100000, no_pivot_root=True),
)
TOML = _any(
    options.RUNTIME,
    runtimeoptions.Options(
        config_body=b'ShimCgroup = "/pods"\nIoUid = 7\ntask_api = "v2"\nCriuPath = ""\n'
    ),
)


def test_bootstrap_params_with_each_option_type() -> None:
    for ext, want in (
        (
            RUNC,
            {
                "shim_cgroup": "/pods",
                "io_uid": 1000,
                "io_gid": 1001,
                "binary_name": "runc",
                "no_new_keyring": True,
            },
        ),
        (
            LEGACY,
            {"shim_cgroup": "/pods", "io_uid": 100000, "io_gid": 100000, "no_pivot_root": True},
        ),
        (TOML, {"shim_cgroup": "/pods", "io_uid": 7, "task_api": "v2"}),
    ):
        got = bootstrap.parse(_params(ext), ID, NS)
        assert got.bootstrap and got.debug and got.options == want
        assert got.containerd_version == "v2.4.2"
        assert got.socket_dir == "/run/containerd/s"
        assert got.ttrpc_address.endswith(".ttrpc")


def test_bootstrap_without_options_and_unknown_extensions() -> None:
    got = bootstrap.parse(
        _params(
            AnyMsg(type_url="containerd.io/cri.v1.PodSandboxConfig", value=b"\x0a\x01x"),
            log_level=boot.LogLevel.INFO,
        ),
        ID,
        NS,
    )
    assert got.bootstrap and not got.debug and got.options == {}
    assert got.ignored == ["containerd.io/cri.v1.PodSandboxConfig"]


def test_legacy_raw_any_of_each_type_and_empty_stdin() -> None:
    assert not bootstrap.parse(b"", ID, NS).bootstrap
    for ext in (RUNC, LEGACY, TOML):
        got = bootstrap.parse(bytes(ext), ID, NS)
        assert not got.bootstrap and got.options == bootstrap.parse(_params(ext), ID, NS).options


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"\xff\xff\xff", "neither"),  # garbage
        (_params(RUNC)[:-7], "neither"),  # truncated BootstrapParams
        (bytes(RUNC)[:20], "neither"),  # truncated Any
        (bytes(_any("example.com/Unknown", runc_opts.Options())), "Unknown"),
        (
            _params(
                _any("containerd.runc.v1.Options", legacy.CreateOptions(io_gid=5, shim_cgroup="/x"))
            ),
            "wire type",
        ),  # mistyped field
        (_params(RUNC, TOML), "two runtime options"),
        (_params(RUNC, namespace="other"), "-namespace"),
        (_params(RUNC, socket_dir="relative"), "not absolute"),
        (_params(RUNC, socket_dir="/" + "d" * 60), "too long"),
        (bytes(_any(options.RUNC, runc_opts.Options(criu_path="/usr/sbin/criu"))), "criu_path"),
        (
            bytes(
                _any(options.RUNTIME, runtimeoptions.Options(config_body=b"SystemCgroup = true\n"))
            ),
            "SystemCgroup",
        ),
        (
            bytes(_any(options.RUNTIME, runtimeoptions.Options(config_body=b"IoUid = 'x'\n"))),
            "IoUid",
        ),
        (
            bytes(_any(options.RUNTIME, runtimeoptions.Options(config_path="/nonexistent.toml"))),
            "/nonexistent.toml",
        ),
    ],
)
def test_bad_input_is_refused_with_a_message(raw: bytes, words: str) -> None:
    with pytest.raises(bootstrap.StartInputError) as err:
        bootstrap.parse(raw, ID, NS)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_fuzzish_inputs_never_crash() -> None:
    """Random bytes and mutations of real inputs: parsed or refused, never another error."""
    rng = random.Random(10)
    seeds = [_params(RUNC), _params(LEGACY), _params(TOML), bytes(RUNC), bytes(TOML)]
    for i in range(3000):
        if i % 3 == 0:
            raw = rng.randbytes(rng.randrange(64))
        else:
            raw = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            raw = bytes(raw[: rng.randrange(len(raw) + 1)])
        with contextlib.suppress(bootstrap.StartInputError):
            bootstrap.parse(raw, ID, NS)


def test_create_options_of_every_type() -> None:
    assert RuncOptions.from_any(LEGACY) == RuncOptions(
        shim_cgroup="/pods", io_uid=100000, io_gid=100000, no_pivot_root=True
    )
    assert RuncOptions.from_any(RUNC).io_gid == 1001
    assert RuncOptions.from_any(TOML).io_uid == 7
    restore = _any(
        options.LEGACY,
        legacy.CreateOptions(
            open_tcp=True, file_locks=True, empty_namespaces=["network"], cgroups_mode="soft"
        ),
    )
    assert RuncOptions.from_any(restore).restore_flags == (
        "--tcp-established",
        "--file-locks",
        "--empty-ns",
        "network",
        "--manage-cgroups-mode",
        "soft",
    )
    for bad, name in (
        (_any("containerd.runhcs.v1.Options", runc_opts.Options()), "containerd.runhcs.v1.Options"),
        (_any(options.RUNC, runc_opts.Options(criu_path="/c")), "criu_path"),
        (AnyMsg(type_url=options.RUNC, value=b"\xf8\x07\x01"), "field 127"),
    ):
        with pytest.raises(RpcError) as err:
            RuncOptions.from_any(bad)
        assert name in err.value.message


def _start(stdin: bytes, bundle, address: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "shim",
            "-namespace",
            NS,
            "-address",
            address,
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            ID,
            "start",
        ],
        input=stdin,
        cwd=bundle,
        capture_output=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "CONTAINERD_SHIM_LXCFS_TASK_API"},
    )


def test_start_refuses_bad_stdin_with_one_line_and_leaves_nothing(tmp_path) -> None:
    from shim.identity import socket_path, state_dir

    (tmp_path / "config.json").write_text("{}")
    address = str(tmp_path / "c.sock")
    for raw in (
        b"\xff\xff\xff",
        _params(RUNC)[:-7],
        bytes(_any("example.com/Unknown", runc_opts.Options())),
        _params(socket_dir=str(tmp_path / ("d" * 60))),
        _params(_any(options.RUNC, runc_opts.Options(shim_cgroup="/no/such/cg"))),
    ):
        done = _start(raw, tmp_path, address)
        assert done.returncode == 1 and not done.stdout, done
        lines = done.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("containerd-shim-lxcfs-v2 start: "), lines
    assert not os.path.exists(socket_path(address, NS, ID))
    assert not os.path.exists(state_dir(address, NS, ID))
    assert sorted(os.listdir(tmp_path)) == ["config.json"]
