"""anyio ttrpc server: the I/O edge around `codec.ServerConnection`.

One task per connection and one task per request inside that connection's task group, so a
long-lived `Wait` never blocks `Start`/`Kill`/`State` on the same connection. Closing a
connection (EOF, garbage) cancels its in-flight handlers and nothing else.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct

import anyio
import anyio.abc

from protos.gen.google.rpc import Status
from protos.gen.ttrpc import Request, Response
from shim.transport.errors import Code
from shim.transport.rpc import Services, invoke
from shim.transport.ttrpc import sockio
from shim.transport.ttrpc.codec import (
    FrameTooLarge,
    ProtocolError,
    RequestReceived,
    ServerConnection,
    StreamError,
    status_response,
)

log = logging.getLogger("shim.ttrpc")

_RECEIVE_SIZE = 256 * 1024
# accept() failures that say "try again later" rather than "the listener is gone".
_TEMPORARY_ACCEPT_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EINTR}
)
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_is_same_user(sock: socket.socket) -> bool:
    """Go ttrpc's UnixSocketRequireSameUser: peer uid and gid must be our euid and egid."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return False
    _pid, uid, gid = _PEERCRED.unpack(raw)
    return uid == os.geteuid() and gid == os.getegid()


class TtrpcServer:
    """Serves `services` (see shim.transport.rpc) over ttrpc on an already listening unix socket."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._accepting = anyio.CancelScope()

    def stop_accepting(self) -> None:
        """Close the listener; connections already accepted keep being served."""
        self._accepting.cancel()

    async def serve(
        self,
        listener_socket: socket.socket | int,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections until cancelled.

        Takes ownership of `listener_socket` (a listening unix socket or its fd, e.g. the
        inherited fd 3) and closes it on return; the socket file is left for the caller.
        """
        listener = sockio.adopt(listener_socket)
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                with self._accepting:
                    await self._accept_loop(listener, tg)
                listener.close()  # stop_accepting(): connects are refused from now on
        finally:
            listener.close()

    async def _accept_loop(self, listener: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        backoff = 0.0
        while True:
            try:
                conn = await sockio.accept(listener)
            except OSError as exc:
                if exc.errno not in _TEMPORARY_ACCEPT_ERRNOS:
                    raise
                # Go backs off 1 ms doubling to 1 s; e.g. EMFILE clears as fds free up.
                backoff = min(max(backoff * 2, 0.001), 1.0)
                log.warning("ttrpc: accept failed (%s), retrying in %.3fs", exc, backoff)
                await anyio.sleep(backoff)
                continue
            backoff = 0.0
            tg.start_soon(self._serve_connection, conn)

    async def _serve_connection(self, sock: socket.socket) -> None:
        with sock:
            if not peer_is_same_user(sock):
                log.warning("ttrpc: closing connection from a different uid/gid")
                return
            try:
                async with anyio.create_task_group() as tg:
                    conn = _Connection(self, sock, tg.cancel_scope)
                    try:
                        await conn.read_loop(tg)
                    finally:
                        # EOF or a broken stream: in-flight handlers have nobody to answer.
                        tg.cancel_scope.cancel()
                        sockio.shutdown(sock)
            except Exception:
                # A bug in this layer must cost one connection, never the whole server.
                log.exception("ttrpc: connection failed")

    async def dispatch(self, request: Request) -> Response:
        """Run one request through the method table; always returns a Response."""
        service = self._services.get(request.service)
        if service is None:
            return status_response(Code.UNIMPLEMENTED, f"service {request.service}")
        method = service.get(request.method)
        if method is None:
            return status_response(Code.UNIMPLEMENTED, f"method {request.method}")
        name = f"ttrpc: /{request.service}/{request.method}"
        timeout = request.timeout_nano / 1e9 if request.timeout_nano > 0 else None
        try:
            with anyio.fail_after(timeout):
                outcome = await invoke(
                    method,
                    request.payload,
                    ((kv.key, kv.value) for kv in request.metadata),
                    name=name,
                    log=log,
                    unmarshal_error="ttrpc: error unmarshalling payload",
                )
        except TimeoutError:  # our deadline: the handler's own TimeoutError is in `outcome`
            log.warning("%s: deadline of %.3fs exceeded", name, timeout)
            return status_response(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
        if outcome.code is not Code.OK:
            return status_response(outcome.code, outcome.message)
        return Response(status=Status(code=Code.OK), payload=outcome.payload)


class _Connection:
    """Per-connection state: the codec, the write lock and the scope to tear it down."""

    def __init__(self, server: TtrpcServer, sock: socket.socket, scope: anyio.CancelScope) -> None:
        self.server = server
        self.sock = sock
        self.scope = scope
        self.codec = ServerConnection()
        self.write_lock = anyio.Lock()

    async def read_loop(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                data = await sockio.receive(self.sock, _RECEIVE_SIZE)
            except OSError as exc:
                log.debug("ttrpc: connection lost: %s", exc)
                return
            if not data:
                if self.codec.buffered:
                    log.debug("ttrpc: connection closed mid-frame")
                return
            try:
                events = self.codec.receive_data(data)
            except ProtocolError as exc:
                log.warning("ttrpc: closing connection: %s", exc)
                return
            for event in events:
                if isinstance(event, RequestReceived):
                    tg.start_soon(self.handle, event)
                elif isinstance(event, StreamError):
                    data = self.codec.send_status(event.stream_id, event.code, event.message)
                    await self.send(data)

    async def handle(self, event: RequestReceived) -> None:
        response = await self.server.dispatch(event.request)
        try:
            data = self.codec.send_response(event.stream_id, response)
        except FrameTooLarge as exc:
            log.error("ttrpc: /%s/%s: %s", event.request.service, event.request.method, exc)
            data = self.codec.send_status(event.stream_id, exc.code, exc.message)
        await self.send(data)

    async def send(self, data: bytes) -> None:
        """Write one whole frame; frames never interleave thanks to the lock."""
        async with self.write_lock:
            try:
                await sockio.send_all(self.sock, data)
            except OSError as exc:
                log.debug("ttrpc: write failed: %s", exc)
                self.scope.cancel()  # peer gone: stop reading and drop other handlers
