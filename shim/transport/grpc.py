"""gRPC transport: grpclib serving `containerd.task.v3.Task` from the shared method table.

containerd 2.x dials a shim that printed `{"version":3,...,"protocol":"grpc"}` with gRPC
instead of ttrpc. The RPC paths come from the betterproto-generated `TaskBase`; each handler
only moves bytes: the v3 messages are byte-identical to the v2 ones the method table decodes,
so the request is parsed once with `Method.request`, the one TaskService is called, and the
reply is encoded once. Errors keep the code and message the handlers raised, exactly as the
ttrpc server sends them.
"""

from __future__ import annotations

import functools
import logging
import socket
import struct
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from protos.gen.containerd.task.v3 import TaskBase
from shim.transport.errors import Code
from shim.transport.rpc import Method, invoke

log = logging.getLogger("shim.grpc")

#: grpc-go's default receive limit (and Go ttrpc's): grpclib itself has none and would
#: buffer whatever length a peer announces.
MAX_MESSAGE_SIZE = 4 << 20
#: How long in-flight calls get to finish when the shim stops.
_CLOSE_TIMEOUT = 2.0
_PREFIX = struct.Struct(">?I")  # gRPC message prefix: compressed flag, length
TASK_V3 = "containerd.task.v3.Task"


class _Bytes(CodecBase):
    """Hand payloads through untouched: handlers decode with the method table's types."""

    __content_subtype__ = "proto"  # what grpc-go sends ("application/grpc" means proto)

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


async def _receive(stream: Stream[bytes, bytes]) -> bytes:
    """The one request message, refusing oversized ones before buffering them.

    grpclib 0.4 exposes no receive limit, so this reads the length prefix from the
    underlying HTTP/2 stream itself (grpclib's `recv_message` does the same steps).
    """
    h2_stream = stream._stream
    prefix = await h2_stream.recv_data(_PREFIX.size)
    if len(prefix) != _PREFIX.size:
        raise GRPCError(Status.INTERNAL, "grpc: request message missing")
    compressed, length = _PREFIX.unpack(prefix)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, "grpc: compressed messages are not supported")
    if length > MAX_MESSAGE_SIZE:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"grpc: received message larger than max ({length} vs. {MAX_MESSAGE_SIZE})",
        )
    return await h2_stream.recv_data(length) if length else b""


async def _unary(path: str, method: Method, stream: Stream[bytes, bytes]) -> None:
    """decode -> call -> encode, with the ttrpc server's error mapping."""
    data = await _receive(stream)
    metadata = stream.metadata or {}
    outcome = await invoke(
        method,
        data,
        [(k, v) for k, v in metadata.items() if isinstance(v, str)],
        name=f"grpc: {path}",
        log=log,
        unmarshal_error="grpc: error unmarshalling request",
    )
    if outcome.code is not Code.OK:
        raise GRPCError(Status(outcome.code), outcome.message)
    await stream.send_message(outcome.payload)


async def _unknown(path: str, stream: Stream[bytes, bytes]) -> None:
    """What the ttrpc server answers for an unknown service or method, on gRPC."""
    service, _, name = path.lstrip("/").rpartition("/")
    if service != TASK_V3:
        raise GRPCError(Status.UNIMPLEMENTED, f"service {service}")
    raise GRPCError(Status.UNIMPLEMENTED, f"method {name}")


class _Routes(dict[str, Handler]):
    """grpclib's path -> handler table with a fallback for unknown paths.

    grpclib itself answers an unknown path with a trailers-only response that lacks
    `content-type`, which gRPC clients (grpclib's, grpc-go's) report as UNKNOWN instead of
    the UNIMPLEMENTED it carries; a handler of our own answers through the normal stream.
    """

    def get(self, path: str, default: Any = None) -> Handler:  # type: ignore[override]
        found = super().get(path)
        if found is not None:
            return found
        return Handler(functools.partial(_unknown, path), Cardinality.UNARY_UNARY, bytes, bytes)


class _TaskV3:
    """grpclib servable: the generated service's paths bound to the method table."""

    def __init__(self, methods: Mapping[str, Method]) -> None:
        paths = TaskBase().__mapping__()
        names = {path.rsplit("/", 1)[1]: path for path in paths}
        if set(names) != set(methods):
            raise ValueError(
                f"method table and containerd.task.v3.Task differ: "
                f"{sorted(set(names) ^ set(methods))}"
            )
        self._mapping = {
            path: Handler(
                functools.partial(_unary, path, methods[name]),
                Cardinality.UNARY_UNARY,
                bytes,
                bytes,
            )
            for name, path in names.items()
        }

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping


class GrpcServer:
    """Serves the task method table as gRPC `containerd.task.v3.Task` on a listening socket."""

    def __init__(self, methods: Mapping[str, Method]) -> None:
        self._service = _TaskV3(methods)
        self._server: Server | None = None

    def stop_accepting(self) -> None:
        """Close the listener; calls on open connections still get their answers.

        grpclib's own close() also cancels running calls (the Shutdown being answered), so
        this closes the asyncio server underneath it, which only stops listening.
        """
        if self._server is not None and self._server._server is not None:
            self._server._server.close()

    async def serve(
        self,
        listener: socket.socket,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled, then stop accepting and give calls a moment to finish.

        grpclib runs each call in its own asyncio task; this task owns the server's life,
        so cancelling the daemon's task group stops it. Takes ownership of `listener`.
        """
        server = self._server = Server([self._service], codec=_Bytes())
        server._mapping = _Routes(server._mapping)  # grpclib 0.4 has no unknown-method hook
        try:
            await server.start(sock=listener)
            task_status.started()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
                try:
                    server.close()
                    await server.wait_closed()
                except RuntimeError:  # never started
                    pass
            listener.close()
