"""Hostile input to a real shim (hypothesis): `start`'s stdin, Exec's process spec, Update's
resources. Root only (the shim mounts its view, runc runs the container).

- `start` is run as containerd runs it (the binary, its public entry point), with every kind
  of options on stdin: nothing, garbage, an Any of runc's Options, of runtimeoptions' Options
  (TOML body or path), of unknown types, with random field values. It must exit 0 with one
  line (the address) or 1 with a message, never a traceback, never hang; the shims it
  launches exit on their own (unused exit) and leave nothing.
- Exec with random JSON (and non-JSON) process specs, then Start, and Update with random
  resources, on one running container: every call answers OK or a status with a message;
  the container keeps running; the shim never crashes.

Budget: `FUZZ_SHIM_EXAMPLES` (default 25 per property); see tests/test_fuzz.py for a campaign.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.from_thread
import harness
import pytest
from betterproto.lib.google.protobuf import Any as AnyMsg
from betterproto.lib.google.protobuf import Empty
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_transports import fake_containerd, shutdown, started_shim, task_client

from protos.gen.containerd.runc import v1 as runc_opts
from protos.gen.containerd.task import v2 as api
from protos.gen.containerd.types import Mount
from protos.gen.runtimeoptions import v1 as runtimeoptions
from shim.identity import STATE_DIR, shim_hash
from shim.transport.errors import RpcError

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_SHIM_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROCESS_SPEC = "types.containerd.io/opencontainers/runtime-spec/1/Process"


def _shim_bin() -> str:
    found = harness.find_shim_bin_dir()
    if os.geteuid() != 0 or found is None:
        pytest.fail("needs root and an installed shim (install.sh --test)", pytrace=False)
    return os.path.join(found, harness.LXCFS_SHIM)


# --------------------------------------------------------------------------- start's stdin

_toml_values = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.booleans(),
    st.sampled_from(["v2", "v3-ttrpc", "v3-grpc", ""]),
)
_toml_keys = st.sampled_from(
    ["task_api", "ShimCgroup", "shim_cgroup", "BinaryName", "SystemdCgroup", "Root", "IoUid", "x"]
)


def _toml(table: dict) -> str:
    lines = []
    for k, v in table.items():
        lines.append(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
    return "\n".join(lines) + "\n"


_toml_bodies = st.one_of(
    st.text(max_size=80), st.dictionaries(_toml_keys, _toml_values, max_size=4).map(_toml)
)
_runc_options = st.builds(
    runc_opts.Options,
    no_pivot_root=st.booleans(),
    no_new_keyring=st.booleans(),
    shim_cgroup=st.one_of(st.just(""), st.text(max_size=20)),
    io_uid=st.integers(0, 2**32 - 1),
    io_gid=st.integers(0, 2**32 - 1),
    binary_name=st.text(max_size=10),
    root=st.text(max_size=10),
    systemd_cgroup=st.booleans(),
)
_runtime_options = st.builds(
    runtimeoptions.Options,
    type_url=st.text(max_size=10),
    config_path=st.one_of(st.just(""), st.text(max_size=30)),
    config_body=_toml_bodies.map(str.encode),
)
_type_urls = st.sampled_from(
    [
        "containerd.runc.v1.Options",
        "runtimeoptions.v1.Options",
        "types.containerd.io/containerd.runc.v1.Options",
        "containerd.linux.runc.CreateOptions",
        "google.protobuf.Empty",
    ]
)
stdin_options = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    st.builds(
        lambda t, v: bytes(AnyMsg(type_url=t, value=v)),
        st.one_of(_type_urls, st.text(max_size=40)),
        st.binary(max_size=100),
    ),
    st.builds(
        lambda m: bytes(AnyMsg(type_url="containerd.runc.v1.Options", value=bytes(m))),
        _runc_options,
    ),
    st.builds(
        lambda m: bytes(AnyMsg(type_url="runtimeoptions.v1.Options", value=bytes(m))),
        _runtime_options,
    ),
)


@pytest.fixture(scope="module")
def start_env() -> Iterator[dict]:
    d = tempfile.mkdtemp(prefix="fz-", dir="/tmp")
    bundle = Path(d, "bundle")
    bundle.mkdir()
    env = {
        **os.environ,
        "CONTAINERD_SHIM_LXCFS_ZYGOTE": "0",
        "CONTAINERD_SHIM_LXCFS_UNUSED_EXIT": "0.5",
        "TTRPC_ADDRESS": f"{d}/c.sock.ttrpc",
    }
    env.pop("CONTAINERD_SHIM_LXCFS_TASK_API", None)
    info = {
        "dir": d,
        "bundle": str(bundle),
        "env": env,
        "address": f"{d}/c.sock",
        "namespace": f"fuzz-{os.getpid()}",
        "id": "start",
    }
    try:
        yield info
    finally:
        h = shim_hash(info["address"], info["namespace"], info["id"])

        def gone() -> bool:
            return not (
                _shims(info["address"])
                or os.path.exists(f"/run/containerd/s/{h}")
                or os.path.exists(os.path.join(STATE_DIR, h))
            )

        left = harness.wait_until(gone, 15, 0.2)
        shutil.rmtree(d, ignore_errors=True)
        assert left, f"left behind by start: shims {_shims(info['address'])}, state {h}"


def _shims(address: str) -> list[int]:
    return [
        pid
        for pid, argv in harness.process_cmdlines().items()
        if harness._flag_value(argv, "address") == address
    ]


@FUZZ
@given(options=stdin_options)
def test_start_with_any_options_on_stdin(start_env, options):
    shim = _shim_bin()
    r = subprocess.run(
        [
            shim,
            "-namespace",
            start_env["namespace"],
            "-address",
            start_env["address"],
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            start_env["id"],
            "start",
        ],
        input=options,
        cwd=start_env["bundle"],
        env=start_env["env"],
        capture_output=True,
        timeout=20,
    )
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert r.returncode in (0, 1), (r.returncode, err)
    if r.returncode == 0:
        assert not err and out.strip() and "\n" not in out.strip(), (out, err)
    else:
        assert harness.LXCFS_SHIM in err and len(err.strip()) > len(harness.LXCFS_SHIM) + 8, err


# --------------------------------------------------------------------------- Exec, Update

_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64), st.floats(), st.text(max_size=20)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_args = st.one_of(st.just(["/bin/true"]), st.lists(st.text(max_size=10), max_size=3), _json)
process_specs = st.one_of(
    st.fixed_dictionaries(
        {"args": _args, "cwd": st.one_of(st.just("/"), _json)},
        optional={
            "env": _json,
            "user": _json,
            "terminal": _json,
            "capabilities": _json,
            "rlimits": _json,
            "noNewPrivileges": _json,
            "apparmorProfile": _json,
            "consoleSize": _json,
        },
    ).map(lambda d: json.dumps(d).encode()),
    _json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
)
#: Limits that cannot starve the container under test (its `sleep` must survive the run):
#: the values runc refuses or the kernel clamps are what is being tried.
_limits = st.one_of(
    st.integers(64 << 20, 2**63 - 1),
    st.integers(-(2**63), -1),
    st.text(max_size=5),
    st.none(),
    st.floats(),
)
resources = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "memory": st.fixed_dictionaries(
                {}, optional={"limit": _limits, "swap": _limits, "reservation": _limits}
            ),
            "cpu": st.fixed_dictionaries(
                {}, optional={"shares": _limits, "quota": _limits, "period": _limits, "cpus": _json}
            ),
            "pids": st.fixed_dictionaries({}, optional={"limit": _limits}),
            "blockIO": _json,
            "devices": _json,
        },
    ).map(lambda d: json.dumps(d).encode()),
    _json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
)


@asynccontextmanager
async def _running_container(tmp: Path, rootfs: Path, shim_bin: str) -> AsyncIterator[dict]:
    namespace = f"fuzz-exec-{os.getpid()}"
    cid = "victim"
    async with (
        fake_containerd(tmp) as (_events, address),
        started_shim(
            shim_bin, tmp, address, cid, namespace=namespace, command=["/bin/sleep", "100000"]
        ) as shim,
        task_client(shim.output, namespace) as client,
    ):
        created = await client.call(
            "Create",
            api.CreateTaskRequest(
                id=cid,
                bundle=str(shim.bundle),
                rootfs=[Mount(type="bind", source=str(rootfs), options=["rbind", "rw"])],
            ),
            api.CreateTaskResponse,
        )
        await client.call("Start", api.StartRequest(id=cid), api.StartResponse)
        try:
            yield {"client": client, "id": cid, "pid": created.pid}
        finally:
            with contextlib.suppress(RpcError):
                await client.call("Kill", api.KillRequest(id=cid, signal=9), Empty)
            await client.call("Wait", api.WaitRequest(id=cid), api.WaitResponse)
            await client.call("Delete", api.DeleteRequest(id=cid), api.DeleteResponse)
            await shutdown(client, cid)


@pytest.fixture(scope="module")
def container(tmp_path_factory) -> Iterator[tuple[anyio.from_thread.BlockingPortal, dict]]:
    shim_bin = _shim_bin()
    tmp = tmp_path_factory.mktemp("fuzzexec")
    rootfs = harness.build_busybox_rootfs(tmp_path_factory.mktemp("rootfs"))
    with (
        anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(_running_container(tmp, rootfs, shim_bin)) as c,
    ):
        yield portal, c


_counter = iter(range(10**9))


async def _exec_once(c: dict, spec: bytes) -> list[str]:
    """Exec, Start, Wait (bounded), Delete; the error messages seen (an error must have one)."""
    client, cid = c["client"], c["id"]
    exec_id = f"e{next(_counter)}"
    problems = []
    try:
        await client.call(
            "Exec",
            api.ExecProcessRequest(
                id=cid, exec_id=exec_id, spec=AnyMsg(type_url=PROCESS_SPEC, value=spec)
            ),
            Empty,
        )
    except RpcError as e:
        assert e.message, ("Exec", e.code)
        return problems
    try:
        await client.call("Start", api.StartRequest(id=cid, exec_id=exec_id), api.StartResponse)
        with anyio.move_on_after(5):
            await client.call("Wait", api.WaitRequest(id=cid, exec_id=exec_id), api.WaitResponse)
        with contextlib.suppress(RpcError):  # it may have exited already
            await client.call("Kill", api.KillRequest(id=cid, exec_id=exec_id, signal=9), Empty)
        await client.call("Wait", api.WaitRequest(id=cid, exec_id=exec_id), api.WaitResponse)
    except RpcError as e:
        assert e.message, ("Start", e.code)
    await client.call("Delete", api.DeleteRequest(id=cid, exec_id=exec_id), api.DeleteResponse)
    return problems


async def _alive(c: dict) -> None:
    state = await c["client"].call("State", api.StateRequest(id=c["id"]), api.StateResponse)
    assert state.pid == c["pid"] and state.status == 2, state  # RUNNING


@FUZZ
@given(spec=process_specs)
def test_exec_with_any_process_spec(container, spec):
    portal, c = container
    portal.call(_exec_once, c, spec)
    portal.call(_alive, c)


async def _update_once(c: dict, body: bytes) -> None:
    try:
        await c["client"].call(
            "Update",
            api.UpdateTaskRequest(
                id=c["id"],
                resources=AnyMsg(
                    type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                    value=body,
                ),
            ),
            Empty,
        )
    except RpcError as e:
        assert e.message, ("Update", e.code)


@FUZZ
@given(body=resources)
def test_update_with_any_resources(container, body):
    portal, c = container
    portal.call(_update_once, c, body)
    portal.call(_alive, c)
