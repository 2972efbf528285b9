"""anyio ttrpc client: the I/O edge around `codec.ClientConnection`.

Used by the shim to publish events to containerd (Events/Forward) and by tests to drive the
shim. Calls are concurrent on one connection; a reader task inside the context's task group
routes responses to waiting calls, and fails them all with ConnectionClosed when the
connection dies.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.abc
import betterproto

from protos.gen.ttrpc import KeyValue, Request, Response
from shim.transport.errors import Code, ConnectionClosed, RpcError
from shim.transport.ttrpc import sockio
from shim.transport.ttrpc.codec import ClientConnection, ProtocolError

log = logging.getLogger("shim.ttrpc")

T = TypeVar("T", bound=betterproto.Message)
MetadataArg = Mapping[str, str | Sequence[str]]

_RECEIVE_SIZE = 256 * 1024


@dataclass
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    response: Response | None = None  # None once done means the connection closed


def socket_path(address: str | os.PathLike[str]) -> str:
    """A filesystem path from a path or a `unix://` address (TTRPC_ADDRESS may carry one)."""
    address = os.fspath(address)
    return address.removeprefix("unix://")


def _key_values(metadata: MetadataArg | None) -> list[KeyValue]:
    pairs: list[KeyValue] = []
    for key, values in (metadata or {}).items():
        for value in [values] if isinstance(values, str) else values:
            pairs.append(KeyValue(key=key.lower(), value=value))
    return pairs


class TtrpcClient:
    """One ttrpc connection. Create it with `async with TtrpcClient.connect(path) as c`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._codec = ClientConnection()
        self._write_lock = anyio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._closed_reason: str | None = None

    @classmethod
    @asynccontextmanager
    async def connect(cls, address: str | os.PathLike[str]) -> AsyncIterator[TtrpcClient]:
        """Connect to a unix socket path (or `unix://` address) for the block's duration.

        Calls must finish inside the block; on exit pending calls get ConnectionClosed.
        """
        sock = await sockio.connect_unix(socket_path(address))
        async with cls.over(sock) as client:
            yield client

    @classmethod
    @asynccontextmanager
    async def over(cls, sock: socket.socket) -> AsyncIterator[TtrpcClient]:
        """Run a client over an already connected socket; closes the socket on exit."""
        client = cls(sockio.adopt(sock))
        with sock:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client._read_loop)
                try:
                    yield client
                finally:
                    client._close("ttrpc: client closed")
                    tg.cancel_scope.cancel()
                    sockio.shutdown(sock)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    async def call(
        self,
        service: str,
        method: str,
        request: betterproto.Message,
        response_type: type[T],
        *,
        timeout: float | None = None,
        metadata: MetadataArg | None = None,
    ) -> T:
        """Unary call. Raises RpcError for a non-OK status (DEADLINE_EXCEEDED when `timeout`
        seconds pass first) and ConnectionClosed if the connection dies before the answer."""
        envelope = Request(
            service=service,
            method=method,
            payload=bytes(request),
            metadata=_key_values(metadata),
        )
        pending = _Pending()
        sid: int | None = None
        deadline = anyio.current_time() + timeout if timeout is not None else None
        try:
            with anyio.move_on_after(timeout) as scope:
                async with self._write_lock:
                    self._raise_if_closed()
                    if deadline is not None:
                        remaining = deadline - anyio.current_time()
                        envelope.timeout_nano = max(1, int(remaining * 1e9))
                    sid, data = self._codec.send_request(envelope)
                    self._pending[sid] = pending
                    # A half-written frame would corrupt the connection for every call.
                    with anyio.CancelScope(shield=True):
                        await self._send(data)
                await pending.done.wait()
            if scope.cancelled_caught:
                raise RpcError.deadline_exceeded()
        finally:
            if sid is not None:
                self._pending.pop(sid, None)
                self._codec.forget(sid)

        response = pending.response
        if response is None:
            raise ConnectionClosed(self._closed_reason or "ttrpc: closed")
        status = response.status
        if status is not None and status.code != Code.OK:
            raise RpcError(Code.of(status.code), status.message)
        try:
            return response_type().parse(response.payload)
        except Exception as exc:
            raise RpcError(Code.INTERNAL, f"ttrpc: error unmarshalling response: {exc}") from exc

    def _raise_if_closed(self) -> None:
        if self._closed_reason is not None:
            raise ConnectionClosed(self._closed_reason)

    async def _send(self, data: bytes) -> None:
        try:
            await sockio.send_all(self._sock, data)
        except OSError as exc:
            self._close("ttrpc: closed")
            raise ConnectionClosed() from exc

    async def _read_loop(self) -> None:
        """Route responses to calls; never raises, so it cannot tear down the caller."""
        reason = "ttrpc: closed"
        try:
            while data := await sockio.receive(self._sock, _RECEIVE_SIZE):
                for event in self._codec.receive_data(data):
                    pending = self._pending.get(event.stream_id)
                    if pending is not None:
                        pending.response = event.response
                        pending.done.set()
        except ProtocolError as exc:
            log.warning("ttrpc: client closing connection: %s", exc)
            reason = f"ttrpc: closed: {exc}"
        except OSError as exc:
            reason = f"ttrpc: closed: {exc}"
        finally:
            self._close(reason)

    def _close(self, reason: str) -> None:
        """Mark the connection dead and wake every waiting call."""
        if self._closed_reason is None:
            self._closed_reason = reason
        for pending in self._pending.values():
            pending.done.set()
