"""The task API on every transport the shim offers, against a shim started as containerd does.

Each test runs `containerd-shim-lxcfs-v2 -namespace NS -address ADDR -publish-binary BIN -id ID
start` with cwd = a real bundle (config.json + busybox rootfs mounted by the shim), the
environment containerd sets (TTRPC_ADDRESS pointing at a fake events service run here, which
records every Forward), the runtime options on stdin, and a `log` fifo held open like
containerd holds it. It parses what `start` printed exactly as containerd 2.x does, then
drives the daemon (which got the socket as fd 3) with a test client: our ttrpc client for
`containerd.task.v2.Task` / `containerd.task.v3.Task`, a grpclib client built from the
betterproto `TaskStub` for gRPC. Real runc, real FUSE view.

Matrix (transport <- who starts the shim and how the operator chose it):
  ttrpc v2  <- a containerd before 2.3 (options Any on stdin), nothing set: plain address
  ttrpc v2  <- the same with v3-grpc set: no containerd before 2.3 can use gRPC
  ttrpc v3  <- CONTAINERD_SHIM_LXCFS_TASK_API=v3-ttrpc in the shim's environment
  ttrpc v3  <- containerd 2.4.2's BootstrapParams, nothing set: a BootstrapResult
  gRPC v3   <- BootstrapParams of a containerd newer than any known to drop gRPC, with
               runtimeoptions.v1.Options config_body `task_api = "v3-grpc"`
  gRPC v3   <- the same with config_path -> TOML file
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import betterproto
import harness
import pytest
from betterproto.lib.google.protobuf import Any as AnyMsg
from betterproto.lib.google.protobuf import Empty
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, StreamTerminatedError

from protos.gen.containerd import events as ev
from protos.gen.containerd.runtime.bootstrap import v1 as boot
from protos.gen.containerd.services.events.ttrpc import v1 as events_svc
from protos.gen.containerd.task import v2 as api
from protos.gen.containerd.task import v3 as api3
from protos.gen.containerd.types import Mount
from protos.gen.containerd.v1 import types as v1types
from protos.gen.runtimeoptions import v1 as runtimeoptions
from shim.entry import config
from shim.identity import socket_path, state_dir
from shim.transport.errors import Code, ConnectionClosed, RpcError
from shim.transport.rpc import Method
from shim.transport.ttrpc import TtrpcClient, TtrpcServer

pytestmark = pytest.mark.e2e

EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"
MEMORY_LIMIT = 64 << 20
PROCESS_SPEC = "types.containerd.io/opencontainers/runtime-spec/1/Process"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _require_root_tools() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (runc, mounts, FUSE)")
    if shutil.which("runc") is None:
        problems.append("runc not on PATH: apt-get install runc")
    if not os.access("/bin/busybox", os.X_OK):
        problems.append("/bin/busybox missing: apt-get install busybox-static")
    if harness.find_shim_bin_dir() is None:
        problems.append(f"{harness.LXCFS_SHIM} not installed next to {sys.executable}")
    if problems:
        pytest.fail("transport tests: " + "; ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_root_tools()
    return harness.build_busybox_rootfs(tmp_path_factory.mktemp("rootfs"))


@pytest.fixture
def shim_bin() -> str:
    _require_root_tools()
    return os.path.join(harness.find_shim_bin_dir() or "", harness.LXCFS_SHIM)


# --------------------------------------------------------------------------- fake containerd


@dataclass
class Events:
    """The fake containerd events service: records every Forward."""

    received: list[events_svc.Envelope] = field(default_factory=list)

    async def forward(self, req: events_svc.ForwardRequest) -> Empty:
        self.received.append(req.envelope)
        return Empty()

    def topics(self, container_id: str) -> list[str]:
        out = []
        for envelope in self.received:
            cls = _EVENT_TYPES[envelope.event.type_url]
            if cls().parse(envelope.event.value).container_id == container_id:
                out.append(envelope.topic)
        return out


_EVENT_TYPES: dict[str, type[Any]] = {
    "containerd.events.TaskCreate": ev.TaskCreate,
    "containerd.events.TaskStart": ev.TaskStart,
    "containerd.events.TaskExit": ev.TaskExit,
    "containerd.events.TaskDelete": ev.TaskDelete,
    "containerd.events.TaskExecAdded": ev.TaskExecAdded,
    "containerd.events.TaskExecStarted": ev.TaskExecStarted,
    "containerd.events.TaskOom": ev.TaskOom,
}


@asynccontextmanager
async def fake_containerd(tmp: Path) -> AsyncIterator[tuple[Events, str]]:
    """An events ttrpc server on `<tmp>/c.sock.ttrpc`, like containerd's TTRPC_ADDRESS."""
    events = Events()
    address = str(tmp / "c.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address + ".ttrpc")
    listener.listen(16)
    server = TtrpcServer(
        {EVENTS_SERVICE: {"Forward": Method(events_svc.ForwardRequest, events.forward)}}
    )
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        try:
            yield events, address
        finally:
            tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- task clients


class TaskClient:
    """One surface over ttrpc v2/v3 and gRPC v3: v2 messages in and out, RpcError on failure."""

    async def call(
        self, name: str, request: betterproto.Message, reply: type[betterproto.Message]
    ) -> Any:
        raise NotImplementedError


class TtrpcTaskClient(TaskClient):
    def __init__(self, client: TtrpcClient, service: str, namespace: str) -> None:
        self.client, self.service, self.namespace = client, service, namespace

    async def call(
        self, name: str, request: betterproto.Message, reply: type[betterproto.Message]
    ) -> Any:
        return await self.client.call(
            self.service,
            name,
            request,
            reply,
            timeout=30,
            metadata={"containerd-namespace-ttrpc": self.namespace},
        )


class GrpcTaskClient(TaskClient):
    """grpclib client from the betterproto stubs; v2 <-> v3 by bytes (identical schemas)."""

    def __init__(self, channel: Channel, namespace: str) -> None:
        self.stub = api3.TaskStub(channel, metadata={"containerd-namespace": namespace}, timeout=30)

    async def call(
        self, name: str, request: betterproto.Message, reply: type[betterproto.Message]
    ) -> Any:
        # grpclib cancels the calling task when the connection drops mid-call and never
        # uncancels it, which anyio later takes for an outside cancellation: give it its own.
        return await asyncio.ensure_future(self._call(name, request, reply))

    async def _call(
        self, name: str, request: betterproto.Message, reply: type[betterproto.Message]
    ) -> Any:
        v3_request = getattr(api3, type(request).__name__)().parse(bytes(request))
        method = getattr(self.stub, betterproto.casing.snake_case(name))
        try:
            result = await method(v3_request)
        except GRPCError as e:
            raise RpcError(Code(e.status.value), e.message or "") from e
        except (StreamTerminatedError, ConnectionError) as e:
            raise ConnectionClosed(str(e)) from e
        return reply().parse(bytes(result))


@asynccontextmanager
async def task_client(output: str, namespace: str) -> AsyncIterator[TaskClient]:
    """Dial what `start` printed the way containerd 2.x parses it (parseStartResponse)."""
    try:
        params = json.loads(output)
    except ValueError:
        params = None
    if not isinstance(params, dict) or params.get("version", 0) < 2:
        params = {"version": 2, "address": output, "protocol": "ttrpc"}
    service = "containerd.task.v3.Task" if params["version"] == 3 else "containerd.task.v2.Task"
    if params["protocol"] == "ttrpc":
        assert params["address"].startswith("unix://"), params  # else: an abstract socket
        async with TtrpcClient.connect(params["address"]) as client:
            yield TtrpcTaskClient(client, service, namespace)
        return
    assert params["protocol"] == "grpc" and params["version"] == 3, params
    assert params["address"].startswith("/"), "containerd dials a gRPC address as a bare path"
    channel = Channel(path=params["address"])
    try:
        yield GrpcTaskClient(channel, namespace)
    finally:
        channel.close()


# --------------------------------------------------------------------------- the shim


@dataclass
class Shim:
    namespace: str
    address: str
    id: str
    bundle: Path
    output: str
    log: bytearray
    socket_dir: str = ""

    @property
    def socket(self) -> str:
        return socket_path(self.address, self.namespace, self.id, self.socket_dir)


def make_bundle(
    tmp: Path,
    cid: str,
    namespace: str,
    command: list[str],
    annotations: dict[str, str] | None = None,
) -> Path:
    """What containerd lays out before `start`: config.json, empty rootfs/, the `log` fifo."""
    bundle = tmp / cid
    bundle.mkdir()
    (bundle / "rootfs").mkdir(mode=0o711)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = command
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["hostname"] = cid
    spec["linux"]["cgroupsPath"] = f"/{namespace}/{cid}"
    spec["linux"]["resources"] = {"memory": {"limit": MEMORY_LIMIT}}
    spec["annotations"] = annotations or {}
    (bundle / "config.json").write_text(json.dumps(spec))
    os.mkfifo(bundle / "log", 0o700)
    return bundle


def runtime_options(*, body: str = "", path: str = "") -> bytes:
    """The Any CRI sends for a non-runc runtime with an `options` table."""
    opts = runtimeoptions.Options(config_path=path, config_body=body.encode())
    return bytes(AnyMsg(type_url="runtimeoptions.v1.Options", value=bytes(opts)))


async def _drain(fd: int, into: bytearray) -> None:
    while True:
        await anyio.wait_readable(fd)
        with contextlib.suppress(BlockingIOError):
            into.extend(os.read(fd, 65536))


@asynccontextmanager
async def started_shim(
    shim_bin: str,
    tmp: Path,
    containerd_address: str,
    cid: str,
    *,
    namespace: str,
    command: list[str],
    options: bytes = b"",
    env: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    containerd_version: str = "",
    socket_dir: str = "/run/containerd/s",
    extensions: tuple[AnyMsg, ...] = (),
) -> AsyncIterator[Shim]:
    """Run `start` exactly as containerd does; clean up whatever the test left behind.

    With `containerd_version`, as containerd 2.3+ does: BootstrapParams on stdin (options as
    an extension), a BootstrapResult back; `Shim.output` then holds it as bootstrap JSON.
    """
    if containerd_version:
        params = boot.BootstrapParams(
            instance_id=cid,
            namespace=namespace,
            log_level=boot.LogLevel.DEBUG,
            containerd_version=containerd_version,
            containerd_ttrpc_address=containerd_address + ".ttrpc",
            containerd_grpc_address=containerd_address,
            containerd_binary="/usr/bin/containerd",
            socket_dir=socket_dir,
        )
        if options:
            params.extensions.append(boot.Extension(value=AnyMsg().parse(options)))
        params.extensions.extend(boot.Extension(value=e) for e in extensions)
        options = bytes(params)
    bundle = make_bundle(tmp, cid, namespace, command, annotations)
    log = bytearray()
    log_fd = os.open(bundle / "log", os.O_RDWR | os.O_NONBLOCK)  # as containerd holds it
    inherited = {k: v for k, v in os.environ.items() if k != config.ENV}
    environ = {
        **inherited,
        "GOMAXPROCS": "2",
        "MAX_SHIM_VERSION": "2",
        "TTRPC_ADDRESS": containerd_address + ".ttrpc",
        "GRPC_ADDRESS": containerd_address,
        "NAMESPACE": namespace,
        **(env or {}),
    }
    cmd = [
        shim_bin,
        "-namespace",
        namespace,
        "-address",
        containerd_address,
        "-publish-binary",
        "/usr/bin/containerd",
        "-id",
        cid,
        "start",
    ]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, log_fd, log)
            with anyio.fail_after(30):
                done = await anyio.run_process(
                    cmd, input=options, cwd=bundle, env=environ, check=False
                )
            # containerd reads stdout and stderr combined: only the address may be there
            assert done.returncode == 0 and not done.stderr, (done, bytes(log).decode())
            if containerd_version:
                answer = boot.BootstrapResult().parse(done.stdout)
                assert bytes(answer) == done.stdout  # nothing else, nothing unknown
                output = json.dumps(
                    {
                        "version": answer.version,
                        "address": answer.address,
                        "protocol": answer.protocol,
                    },
                    separators=(",", ":"),
                )
            else:
                output = done.stdout.decode().strip()
            assert "\n" not in output, output
            shim = Shim(
                namespace,
                containerd_address,
                cid,
                bundle,
                output,
                log,
                socket_dir if containerd_version else "",
            )
            try:
                yield shim
            finally:
                tg.cancel_scope.cancel()
    finally:
        print(f"--- shim log of {cid}:\n{bytes(log).decode(errors='replace')}")  # on failure
        os.close(log_fd)
        _cleanup(shim_bin, namespace, containerd_address, cid, bundle)


def _shim_pids(containerd_address: str, cid: str | None = None) -> list[int]:
    return [
        pid
        for pid, argv in harness.process_cmdlines().items()
        if harness._flag_value(argv, "address") == containerd_address
        and any(harness.LXCFS_SHIM in a for a in argv[:3])
        and cid in (None, harness._flag_value(argv, "id"))
    ]


def _cleanup(shim_bin: str, namespace: str, address: str, cid: str, bundle: Path) -> None:
    """Only after a failed test is there anything to do here."""
    for pid in _shim_pids(address, cid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    subprocess.run(
        ["runc", "--root", f"/run/containerd/runc/{namespace}", "delete", "--force", cid],
        capture_output=True,
        check=False,
    )
    with contextlib.suppress(OSError):
        os.rmdir(f"/run/containerd/runc/{namespace}")
    for mp in reversed([m for m in harness.mount_points() if m.startswith(str(bundle))]):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    with contextlib.suppress(OSError):
        os.unlink(socket_path(address, namespace, cid))
    # a killed daemon leaves its state dir and a dead FUSE mount in it
    state = state_dir(address, namespace, cid)
    for mp in [m for m in harness.mount_points() if m.startswith(state + "/")]:
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    shutil.rmtree(state, ignore_errors=True)


async def wait_gone(pid: int, path: str, timeout: float = 10) -> None:
    """The daemon exits after Shutdown and removes its socket."""
    with anyio.fail_after(timeout):
        while os.path.exists(f"/proc/{pid}") or os.path.exists(path):
            await anyio.sleep(0.05)


async def shutdown(client: TaskClient, cid: str) -> None:
    """containerd tolerates the connection dropping instead of a reply."""
    with contextlib.suppress(ConnectionClosed):
        await client.call("Shutdown", api.ShutdownRequest(id=cid), Empty)


def _expected_output(mode: str, path: str, bootstrap: bool = False) -> str:
    if mode == config.V2 and bootstrap:
        return f'{{"version":2,"address":"unix://{path}","protocol":"ttrpc"}}'
    if mode == config.V2:
        return f"unix://{path}"
    if mode == config.V3_TTRPC:
        return f'{{"version":3,"address":"unix://{path}","protocol":"ttrpc"}}'
    return f'{{"version":3,"address":"{path}","protocol":"grpc"}}'


# --------------------------------------------------------------------------- lifecycle


#: A containerd newer than every release known to drop gRPC shims (shim/entry/config.py).
FUTURE = "v2.99.0"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "way",
    [
        "default",
        "legacy-grpc-refused",
        "env",
        "bootstrap-default",
        "bootstrap-socket-dir",
        "options-body",
        "options-path",
    ],
)
async def test_lifecycle(way: str, tmp_path: Path, rootfs: Path, shim_bin: str) -> None:
    mode, options, env, version = {
        "default": (config.V2, b"", {}, ""),
        "legacy-grpc-refused": (config.V2, b"", {config.ENV: config.V3_GRPC}, ""),
        "env": (config.V3_TTRPC, b"", {config.ENV: config.V3_TTRPC}, ""),
        "bootstrap-default": (config.V3_TTRPC, b"", {}, "v2.4.2"),
        "bootstrap-socket-dir": (config.V3_TTRPC, b"", {}, "v2.4.2"),
        "options-body": (
            config.V3_GRPC,
            runtime_options(body='task_api = "v3-grpc"\n'),
            {},
            FUTURE,
        ),
        "options-path": (
            config.V3_GRPC,
            runtime_options(path=str(tmp_path / "lxcfs.toml")),
            {config.ENV: config.V3_TTRPC},
            FUTURE,
        ),  # options beat the env
    }[way]
    (tmp_path / "lxcfs.toml").write_text('# shim settings\ntask_api = "v3-grpc"\n')
    short_dir = tempfile.mkdtemp(prefix="s-", dir="/tmp")  # AF_UNIX paths: < 108 bytes
    namespace = f"lxcfs-tr-{os.getpid()}-{way}"
    cid = f"c-{way}"
    marker = f"meminfo-{cid}-{os.getpid()}"
    command = ["/bin/sh", "-c", f"cat /proc/meminfo > /tmp/{marker}; exec sleep 1000"]
    async with (
        fake_containerd(tmp_path) as (events, address),
        started_shim(
            shim_bin,
            tmp_path,
            address,
            cid,
            namespace=namespace,
            command=command,
            options=options,
            env=env,
            containerd_version=version,
            # containerd 2.3+ may name another socket directory (rootless, config)
            socket_dir=short_dir if way == "bootstrap-socket-dir" else "/run/containerd/s",
            # an extension of a type this shim does not know: ignored, logged
            extensions=(AnyMsg(type_url="containerd.io/example.v1.Future", value=b"\x08\x01"),)
            if version
            else (),
        ) as shim,
    ):
        if way == "bootstrap-socket-dir":
            assert shim.socket.startswith(short_dir + "/")
            assert os.path.exists(shim.socket)
        if version:
            assert "containerd.io/example.v1.Future' is not known" in bytes(shim.log).decode()
        if version and mode == config.V2:
            assert shim.output == _expected_output(mode, shim.socket, bootstrap=True)
        else:
            assert shim.output == _expected_output(mode, shim.socket)
        if way == "legacy-grpc-refused":
            assert "cannot use v3-grpc" in bytes(shim.log).decode(), bytes(shim.log)
        assert os.path.exists(shim.bundle / "address") == (mode != config.V3_GRPC)
        async with task_client(shim.output, namespace) as client:
            await _lifecycle(client, shim, events, rootfs, marker)
        assert not os.path.exists(state_dir(address, namespace, cid))
    (Path(rootfs) / "tmp" / marker).unlink(missing_ok=True)
    os.rmdir(short_dir)  # the shim removed its socket: empty


async def _lifecycle(
    client: TaskClient, shim: Shim, events: Events, rootfs: Path, marker: str
) -> None:
    cid = shim.id
    connected = await client.call("Connect", api.ConnectRequest(id=cid), api.ConnectResponse)
    shim_pid = connected.shim_pid
    assert shim_pid in _shim_pids(shim.address)

    # the same error, code and text, on every transport
    with pytest.raises(RpcError) as err:
        await client.call("State", api.StateRequest(id="missing"), api.StateResponse)
    assert (err.value.code, err.value.message) == (
        Code.NOT_FOUND,
        "container not created: not found",
    )

    created = await client.call(
        "Create",
        api.CreateTaskRequest(
            id=cid,
            bundle=str(shim.bundle),
            rootfs=[Mount(type="bind", source=str(rootfs), options=["rbind", "rw"])],
        ),
        api.CreateTaskResponse,
    )
    assert created.pid > 0
    started = await client.call("Start", api.StartRequest(id=cid), api.StartResponse)
    assert started.pid == created.pid

    # the real view: the container sees its own memory limit
    out = Path(rootfs) / "tmp" / marker
    with anyio.fail_after(20):
        while not (out.exists() and "MemTotal" in out.read_text()):
            await anyio.sleep(0.05)
    meminfo = harness.parse_meminfo(out.read_text())
    assert meminfo["MemTotal"] == MEMORY_LIMIT // 1024, out.read_text()

    exec_topics = await _exec(client, cid)

    await client.call("Kill", api.KillRequest(id=cid, signal=9), Empty)
    waited = await client.call("Wait", api.WaitRequest(id=cid), api.WaitResponse)
    assert waited.exit_status == 137
    state = await client.call("State", api.StateRequest(id=cid), api.StateResponse)
    assert (state.status, state.exit_status, state.pid) == (
        v1types.Status.STOPPED,
        137,
        created.pid,
    )
    deleted = await client.call("Delete", api.DeleteRequest(id=cid), api.DeleteResponse)
    assert (deleted.pid, deleted.exit_status) == (created.pid, 137)

    await shutdown(client, cid)
    await wait_gone(shim_pid, shim.socket)

    assert events.topics(cid) == [
        "/tasks/create",
        "/tasks/start",
        *exec_topics,
        "/tasks/exit",
        "/tasks/delete",
    ], events.topics(cid)
    assert {e.namespace for e in events.received} == {shim.namespace}
    log = bytes(shim.log).decode(errors="replace")
    assert "level=error" not in log, log


async def _exec(client: TaskClient, cid: str) -> list[str]:
    """Exec a process to completion; the events it must have published."""
    process = {
        "args": ["/bin/sh", "-c", "exit 3"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "terminal": False,
    }
    spec = AnyMsg(type_url=PROCESS_SPEC, value=json.dumps(process).encode())
    await client.call("Exec", api.ExecProcessRequest(id=cid, exec_id="e1", spec=spec), Empty)
    started = await client.call("Start", api.StartRequest(id=cid, exec_id="e1"), api.StartResponse)
    assert started.pid > 0
    waited = await client.call("Wait", api.WaitRequest(id=cid, exec_id="e1"), api.WaitResponse)
    assert waited.exit_status == 3
    await client.call("Delete", api.DeleteRequest(id=cid, exec_id="e1"), api.DeleteResponse)
    return ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"]


# --------------------------------------------------------------------------- gRPC robustness


async def _raw_exchange(path: str, data: bytes) -> bytes:
    """Send `data` on a fresh connection; everything the shim answers until it closes."""
    received = b""
    async with await anyio.connect_unix(path) as stream:
        await stream.send(data)
        with anyio.move_on_after(5) as scope:
            with contextlib.suppress(
                anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError
            ):
                while True:
                    received += await stream.receive()
        assert not scope.cancelled_caught, f"connection still open after {received[:200]!r}"
    return received


class _RawBytes:
    """A grpclib codec sending/receiving raw bytes (to send payloads no stub would)."""

    __content_subtype__ = "proto"

    def encode(self, message: bytes, message_type: Any) -> bytes:
        return message

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


@pytest.mark.anyio
async def test_grpc_bad_input_keeps_serving(tmp_path: Path, rootfs: Path, shim_bin: str) -> None:
    namespace = f"lxcfs-tr-{os.getpid()}-bad"
    cid = "c-bad"
    async with (
        fake_containerd(tmp_path) as (_events, address),
        started_shim(
            shim_bin,
            tmp_path,
            address,
            cid,
            namespace=namespace,
            command=["/bin/sleep", "1000"],
            env={config.ENV: config.V3_GRPC},
            containerd_version=FUTURE,
        ) as shim,
    ):
        path = shim.socket
        assert shim.output == _expected_output(config.V3_GRPC, path)
        async with task_client(shim.output, namespace) as client:
            pid = (
                await client.call("Connect", api.ConnectRequest(id=cid), api.ConnectResponse)
            ).shim_pid

            # garbage bytes and an HTTP/1.1 request: the connection is closed
            await _raw_exchange(path, os.urandom(4096))
            await _raw_exchange(path, b"GET / HTTP/1.1\r\nHost: shim\r\n\r\n")
            # a ttrpc frame on the gRPC socket (a containerd dialing the wrong protocol)
            await _raw_exchange(path, struct.pack(">IIBB", 2, 1, 1, 0) + b"\x0a\x00")

            channel = Channel(path=path, codec=_RawBytes())  # type: ignore[arg-type]
            try:
                # unknown method or service: UNIMPLEMENTED with the ttrpc server's text
                for method, text in (
                    ("/containerd.task.v3.Task/Nope", "method Nope"),
                    ("/containerd.task.v9.Task/State", "service containerd.task.v9.Task"),
                ):
                    with pytest.raises(GRPCError) as err:
                        async with channel.request(
                            method, Cardinality.UNARY_UNARY, bytes, bytes, timeout=10
                        ) as stream:
                            await stream.send_message(b"", end=True)
                            await stream.recv_message()
                    assert (err.value.status.value, err.value.message) == (Code.UNIMPLEMENTED, text)
                # a payload that is not a StateRequest: INTERNAL, as ttrpc answers it
                with pytest.raises(GRPCError) as err:
                    async with channel.request(
                        "/containerd.task.v3.Task/State",
                        Cardinality.UNARY_UNARY,
                        bytes,
                        bytes,
                        timeout=10,
                    ) as stream:
                        await stream.send_message(b"\x0a\x02\xff\xfe", end=True)  # bad UTF-8
                        await stream.recv_message()
                assert err.value.status.value == Code.INTERNAL
            finally:
                channel.close()

            # a message over the 4 MiB limit: RESOURCE_EXHAUSTED (or the connection dropped)
            huge = api.CreateTaskRequest(id=cid, bundle="x" * (5 << 20))
            with pytest.raises((RpcError, ConnectionClosed)) as err:
                await client.call("Create", huge, api.CreateTaskResponse)
            if not isinstance(err.value, ConnectionClosed):
                assert err.value.code == Code.RESOURCE_EXHAUSTED, err.value

        # still serving, on fresh connections, with the same answers
        async with task_client(shim.output, namespace) as client:
            again = await client.call("Connect", api.ConnectRequest(id=cid), api.ConnectResponse)
            assert again.shim_pid == pid
            with pytest.raises(RpcError) as err:
                await client.call("State", api.StateRequest(id=cid), api.StateResponse)
            assert (err.value.code, err.value.message) == (
                Code.NOT_FOUND,
                "container not created: not found",
            )
            await shutdown(client, cid)
        await wait_gone(pid, path)


@pytest.mark.anyio
async def test_group_reuse_prints_what_the_running_shim_serves(
    tmp_path: Path, rootfs: Path, shim_bin: str
) -> None:
    """A second container of the group gets the running shim's address, not today's setting."""
    namespace = f"lxcfs-tr-{os.getpid()}-grp"
    group = {"io.containerd.lxcfs.v2.group": "pod"}
    async with (
        fake_containerd(tmp_path) as (_events, address),
        started_shim(
            shim_bin,
            tmp_path,
            address,
            "first",
            namespace=namespace,
            command=["/bin/true"],
            env={config.ENV: config.V3_GRPC},
            annotations=group,
            containerd_version=FUTURE,
        ) as first,
    ):
        path = socket_path(address, namespace, "pod")
        assert first.output == _expected_output(config.V3_GRPC, path)
        async with started_shim(
            shim_bin,
            tmp_path,
            address,
            "second",
            namespace=namespace,
            command=["/bin/true"],
            annotations=group,
            containerd_version=FUTURE,
        ) as second:
            assert second.output == first.output
            assert not (second.bundle / "address").exists()
        async with task_client(first.output, namespace) as client:
            pid = (
                await client.call("Connect", api.ConnectRequest(id="first"), api.ConnectResponse)
            ).shim_pid
            await shutdown(client, "first")
        await wait_gone(pid, path)
        # the record went with the shim: a new start follows the setting again
        assert not os.path.exists(state_dir(address, namespace, "pod"))


@pytest.mark.anyio
async def test_bad_setting_fails_start_loudly(tmp_path: Path, rootfs: Path, shim_bin: str) -> None:
    """containerd shows `<output>: exit status 1`; no daemon, no socket is left."""
    namespace = f"lxcfs-tr-{os.getpid()}-cfg"
    bundle = make_bundle(tmp_path, "c-cfg", namespace, ["/bin/true"])
    address = str(tmp_path / "c.sock")
    for options, env in (
        (b"", {config.ENV: "v4"}),
        (runtime_options(body="task_api = 3\n"), {}),
        (runtime_options(body="task_api = [\n"), {}),
        (runtime_options(path=str(tmp_path / "missing.toml")), {}),
    ):
        done = subprocess.run(
            [
                shim_bin,
                "-namespace",
                namespace,
                "-address",
                address,
                "-publish-binary",
                "/usr/bin/containerd",
                "-id",
                "c-cfg",
                "start",
            ],
            cwd=bundle,
            input=options,
            capture_output=True,
            timeout=30,
            env={**os.environ, **env},
        )
        assert done.returncode == 1 and not done.stdout, done
        assert b"task" in done.stderr or b"config" in done.stderr, done
    assert not os.path.exists(socket_path(address, namespace, "c-cfg"))
    assert not _shim_pids(address)


def test_start_stays_stdlib_only() -> None:
    """start runs per container on the create path: no grpclib/betterproto imports."""
    code = (
        "import sys, shim.entry.start, shim.entry.info, shim.entry.config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpclib', 'betterproto', 'anyio', 'protos')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.stdout.strip() == "[]"
