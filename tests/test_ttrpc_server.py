"""ttrpc server and client over real unix sockets."""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import betterproto
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from protos.gen.google.rpc import Status
from protos.gen.ttrpc import Request, Response
from shim.transport.errors import Code, ConnectionClosed, RpcError
from shim.transport.rpc import Method, Services, request_metadata
from shim.transport.ttrpc import TtrpcClient, TtrpcServer
from shim.transport.ttrpc.server import peer_is_same_user

SVC = "test.v1.Echo"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(eq=False, repr=False)
class EchoRequest(betterproto.Message):
    text: str = betterproto.string_field(1)
    delay: float = betterproto.double_field(2)


@dataclass(eq=False, repr=False)
class EchoResponse(betterproto.Message):
    text: str = betterproto.string_field(1)


class Handlers:
    """Test service; records handler cancellations so tests can see them."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.started = anyio.Event()

    async def echo(self, req: EchoRequest) -> EchoResponse:
        await anyio.sleep(req.delay)
        return EchoResponse(text=req.text)

    async def fail(self, req: EchoRequest) -> EchoResponse:
        match req.text:
            case "rpc":
                raise RpcError.not_found("container abc")
            case "enoent":
                raise FileNotFoundError(2, "No such file or directory", "/nope")
            case "timeout":
                raise TimeoutError("handler gave up")
            case "nil":
                return None  # type: ignore[return-value]
            case _:
                raise RuntimeError(req.text)

    async def block(self, req: EchoRequest) -> EchoResponse:
        self.started.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.cancelled += 1
        raise AssertionError("unreachable")

    async def big(self, req: EchoRequest) -> EchoResponse:
        return EchoResponse(text="x" * (4 << 20))

    async def metadata(self, req: EchoRequest) -> EchoResponse:
        md = request_metadata()
        return EchoResponse(text=";".join(f"{k}={','.join(v)}" for k, v in sorted(md.items())))

    def services(self) -> Services:
        methods = {
            "Echo": self.echo,
            "Fail": self.fail,
            "Block": self.block,
            "Big": self.big,
            "Metadata": self.metadata,
        }
        return {SVC: {name: Method(EchoRequest, fn) for name, fn in methods.items()}}


@asynccontextmanager
async def serving(tmp_path: Path, handlers: Handlers | None = None) -> AsyncIterator[str]:
    path = str(tmp_path / "shim.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    server = TtrpcServer((handlers or Handlers()).services())
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, sock)
        yield path
        tg.cancel_scope.cancel()


# --- raw wire helpers ---------------------------------------------------------------------


def frame(sid: int, mtype: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">IIBB", len(data), sid, mtype, flags) + data


def request_frame(sid: int, method: str, msg: betterproto.Message, **kw: object) -> bytes:
    return frame(sid, 1, bytes(Request(service=SVC, method=method, payload=bytes(msg), **kw)))


async def read_response(reader: BufferedByteReceiveStream) -> tuple[int, Response]:
    length, sid, mtype, flags = struct.unpack(">IIBB", await reader.receive_exactly(10))
    assert (mtype, flags) == (2, 0)
    return sid, Response().parse(await reader.receive_exactly(length))


async def assert_closed_by_peer(stream: anyio.abc.ByteStream) -> None:
    with anyio.fail_after(5):
        try:
            data = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return
    pytest.fail(f"connection still open, got {data!r}")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- tests --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_and_metadata(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, TtrpcClient.connect(f"unix://{path}") as c:
        resp = await c.call(SVC, "Echo", EchoRequest(text="hi"), EchoResponse)
        assert resp.text == "hi"
        resp = await c.call(
            SVC,
            "Metadata",
            EchoRequest(),
            EchoResponse,
            metadata={"Containerd-Namespace-TTRPC": "k8s.io", "multi": ["a", "b"]},
        )
        assert resp.text == "containerd-namespace-ttrpc=k8s.io;multi=a,b"


@pytest.mark.anyio
async def test_serve_on_inherited_fd(tmp_path: Path) -> None:
    # The shim gets its listener as fd 3 from `start`; serve() accepts a bare fd.
    path = str(tmp_path / "fd.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    fd = sock.detach()
    async with anyio.create_task_group() as tg:
        await tg.start(TtrpcServer(Handlers().services()).serve, fd)
        async with TtrpcClient.connect(path) as c:
            assert (await c.call(SVC, "Echo", EchoRequest(text="fd"), EchoResponse)).text == "fd"
        tg.cancel_scope.cancel()
    with pytest.raises(OSError):
        os.fstat(fd)  # serve() closed it


@pytest.mark.anyio
async def test_success_response_has_ok_status_on_wire(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, await anyio.connect_unix(path) as s:
        await s.send(request_frame(1, "Echo", EchoRequest()))
        length, *_ = struct.unpack(">IIBB", await BufferedByteReceiveStream(s).receive_exactly(10))
        assert length == 2  # just the (empty) status field, like Go


@pytest.mark.anyio
async def test_slow_call_does_not_block_fast_one(tmp_path: Path) -> None:
    order: list[str] = []
    async with serving(tmp_path) as path, TtrpcClient.connect(path) as c:

        async def call(text: str, delay: float) -> None:
            resp = await c.call(SVC, "Echo", EchoRequest(text=text, delay=delay), EchoResponse)
            order.append(resp.text)

        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "slow", 1.0)
                await anyio.sleep(0.05)  # make sure "slow" is sent first
                tg.start_soon(call, "fast", 0.0)
                for i in range(20):
                    tg.start_soon(call, f"n{i}", 0.01)
    assert order[-1] == "slow"
    assert order[0] == "fast" or order[0].startswith("n")
    assert len(order) == 22


@pytest.mark.anyio
async def test_responses_out_of_order_on_the_wire(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, await anyio.connect_unix(path) as s:
        await s.send(
            request_frame(1, "Echo", EchoRequest(text="one", delay=0.3))
            + request_frame(3, "Echo", EchoRequest(text="three"))
        )
        reader = BufferedByteReceiveStream(s)
        sids = [(await read_response(reader))[0] for _ in range(2)]
        assert sids == [3, 1]


@pytest.mark.anyio
async def test_unknown_service_and_method(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, TtrpcClient.connect(path) as c:
        with pytest.raises(RpcError) as info:
            await c.call("no.such.Service", "Echo", EchoRequest(), EchoResponse)
        assert (info.value.code, info.value.message) == (
            Code.UNIMPLEMENTED,
            "service no.such.Service",
        )
        with pytest.raises(RpcError) as info:
            await c.call(SVC, "Nope", EchoRequest(), EchoResponse)
        assert (info.value.code, info.value.message) == (Code.UNIMPLEMENTED, "method Nope")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("rpc", Code.NOT_FOUND, "container abc: not found"),
        ("enoent", Code.NOT_FOUND, "[Errno 2] No such file or directory: '/nope'"),
        ("timeout", Code.DEADLINE_EXCEEDED, "handler gave up"),
        ("boom", Code.UNKNOWN, "boom"),
        ("nil", Code.UNKNOWN, "handler returned NoneType, not a message"),
    ],
)
async def test_handler_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, code: Code, message: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="shim.ttrpc")
    async with serving(tmp_path) as path, TtrpcClient.connect(path) as c:
        with pytest.raises(RpcError) as info:
            await c.call(SVC, "Fail", EchoRequest(text=text), EchoResponse)
        assert (info.value.code, info.value.message) == (code, message)
        # The connection survives handler errors.
        assert (await c.call(SVC, "Echo", EchoRequest(text="ok"), EchoResponse)).text == "ok"
    logged_tracebacks = [r for r in caplog.records if r.exc_info and r.name == "shim.ttrpc"]
    assert bool(logged_tracebacks) == (text != "rpc")


@pytest.mark.anyio
async def test_payload_unmarshal_failure_is_internal(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, await anyio.connect_unix(path) as s:
        await s.send(frame(1, 1, bytes(Request(service=SVC, method="Echo", payload=b"\x0a"))))
        sid, resp = await read_response(BufferedByteReceiveStream(s))
        assert sid == 1
        assert resp.status.code == Code.INTERNAL
        assert resp.status.message.startswith("ttrpc: error unmarshalling payload: ")


@pytest.mark.anyio
async def test_timeout_nano_gives_deadline_exceeded(tmp_path: Path) -> None:
    handlers = Handlers()
    async with serving(tmp_path, handlers) as path, await anyio.connect_unix(path) as s:
        with anyio.fail_after(3):
            await s.send(request_frame(1, "Block", EchoRequest(), timeout_nano=200_000_000))
            _, resp = await read_response(BufferedByteReceiveStream(s))
        assert resp.status.code == Code.DEADLINE_EXCEEDED
        assert resp.status.message == "context deadline exceeded"
        assert handlers.cancelled == 1


@pytest.mark.anyio
async def test_client_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, TtrpcClient.connect(path) as c:
        with anyio.fail_after(3), pytest.raises(RpcError) as info:
            await c.call(SVC, "Block", EchoRequest(), EchoResponse, timeout=0.2)
        assert info.value.code == Code.DEADLINE_EXCEEDED
        # A late answer for the abandoned stream does not confuse later calls.
        assert (await c.call(SVC, "Echo", EchoRequest(text="next"), EchoResponse)).text == "next"


@pytest.mark.anyio
async def test_garbage_closes_only_that_connection(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, TtrpcClient.connect(path) as good:
        assert (await good.call(SVC, "Echo", EchoRequest(text="a"), EchoResponse)).text == "a"
        async with await anyio.connect_unix(path) as bad:
            await bad.send(b"GET / HTTP/1.1\r\nHost: shim\r\n\r\n")
            await assert_closed_by_peer(bad)
        assert (await good.call(SVC, "Echo", EchoRequest(text="b"), EchoResponse)).text == "b"
        async with TtrpcClient.connect(path) as fresh:
            resp = await fresh.call(SVC, "Echo", EchoRequest(text="c"), EchoResponse)
            assert resp.text == "c"


@pytest.mark.anyio
async def test_oversized_frame_gets_resource_exhausted(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, await anyio.connect_unix(path) as s:
        body = b"\0" * ((4 << 20) + 1)
        reader = BufferedByteReceiveStream(s)
        async with anyio.create_task_group() as tg:
            # Send concurrently with reading: the body is bigger than the socket buffers.
            tg.start_soon(s.send, frame(1, 1, body) + request_frame(3, "Echo", EchoRequest()))
            sid, resp = await read_response(reader)
        assert sid == 1
        assert resp.status.code == Code.RESOURCE_EXHAUSTED
        assert resp.status.message == (
            "message length 4194305 exceed maximum message size of 4194304"
        )
        sid, resp = await read_response(reader)  # the connection keeps working
        assert (sid, resp.status.code) == (3, Code.OK)


@pytest.mark.anyio
async def test_oversized_reply_gets_resource_exhausted(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, TtrpcClient.connect(path) as c:
        with pytest.raises(RpcError) as info:
            await c.call(SVC, "Big", EchoRequest(), EchoResponse)
        assert info.value.code == Code.RESOURCE_EXHAUSTED


@pytest.mark.anyio
async def test_stream_id_rules(tmp_path: Path) -> None:
    async with serving(tmp_path) as path, await anyio.connect_unix(path) as s:
        reader = BufferedByteReceiveStream(s)
        await s.send(request_frame(2, "Echo", EchoRequest()))
        sid, resp = await read_response(reader)
        assert (sid, resp.status.code) == (2, Code.INVALID_ARGUMENT)
        await s.send(request_frame(5, "Echo", EchoRequest()))
        assert (await read_response(reader))[1].status.code == Code.OK
        await s.send(request_frame(3, "Echo", EchoRequest()))
        sid, resp = await read_response(reader)
        assert (sid, resp.status) == (
            3,
            Status(code=3, message="StreamID cannot be re-used and must increment"),
        )


@pytest.mark.anyio
async def test_client_eof_cancels_in_flight_handlers(tmp_path: Path) -> None:
    handlers = Handlers()
    async with serving(tmp_path, handlers) as path:
        async with await anyio.connect_unix(path) as s:
            await s.send(request_frame(1, "Block", EchoRequest()))
            with anyio.fail_after(3):
                await handlers.started.wait()
        with anyio.fail_after(3):
            while handlers.cancelled == 0:
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_pending_calls_fail_when_server_goes_away(tmp_path: Path) -> None:
    handlers = Handlers()
    path = str(tmp_path / "shim.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    async with anyio.create_task_group() as server_tg:
        await server_tg.start(TtrpcServer(handlers.services()).serve, sock)
        async with TtrpcClient.connect(path) as c:
            errors: list[BaseException] = []

            async def blocked_call() -> None:
                try:
                    await c.call(SVC, "Block", EchoRequest(), EchoResponse)
                except ConnectionClosed as exc:
                    errors.append(exc)

            with anyio.fail_after(3):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(blocked_call)
                    tg.start_soon(blocked_call)
                    await handlers.started.wait()
                    server_tg.cancel_scope.cancel()  # the shim dies
            assert len(errors) == 2
            assert all(e.code == Code.UNAVAILABLE and str(e) == "ttrpc: closed" for e in errors)
            assert c.closed
            with pytest.raises(ConnectionClosed):
                await c.call(SVC, "Echo", EchoRequest(), EchoResponse)


@pytest.mark.anyio
async def test_other_user_is_disconnected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert peer_is_same_user(a)
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)
        assert not peer_is_same_user(a)
    async with serving(tmp_path) as path, await anyio.connect_unix(path) as s:
        await s.send(request_frame(1, "Echo", EchoRequest()))
        await assert_closed_by_peer(s)


@pytest.mark.anyio
async def test_no_fd_leaks(tmp_path: Path) -> None:
    before = open_fds()
    handlers = Handlers()
    async with serving(tmp_path, handlers) as path:
        for _ in range(3):
            async with TtrpcClient.connect(path) as c:
                await c.call(SVC, "Echo", EchoRequest(text="x"), EchoResponse)
                with pytest.raises(RpcError):
                    await c.call(SVC, "Fail", EchoRequest(text="boom"), EchoResponse)
            async with await anyio.connect_unix(path) as bad:
                await bad.send(b"\xff" * 32)
                await assert_closed_by_peer(bad)
            async with await anyio.connect_unix(path) as s:
                await s.send(request_frame(1, "Block", EchoRequest()))
        # A call abandoned by its caller while the handler is still running.
        async with TtrpcClient.connect(path) as c:
            with anyio.move_on_after(0.1):
                await c.call(SVC, "Block", EchoRequest(), EchoResponse)
    await anyio.sleep(0.05)
    assert open_fds() == before
