"""Minimal non-blocking unix-socket I/O on anyio's readiness primitives.

Why not anyio's SocketListener/UNIXSocketStream: on the asyncio backend (anyio 4.16) they
wait on a bare future that a selector callback resolves; when a task is cancelled in the same
loop iteration as its socket becomes readable, the callback hits the cancelled future and
asyncio logs InvalidStateError (anyio#1267 family). `anyio.wait_readable`/`wait_writable`
tolerate that race and deregister synchronously, so cancelling a pending read is clean —
and the server and client cancel pending reads routinely.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

import anyio
import anyio.lowlevel


def adopt(sock_or_fd: socket.socket | int) -> socket.socket:
    """A non-blocking socket object for `sock_or_fd` (e.g. the inherited fd 3)."""
    sock = sock_or_fd if isinstance(sock_or_fd, socket.socket) else socket.socket(fileno=sock_or_fd)
    sock.setblocking(False)
    return sock


async def accept(listener: socket.socket) -> socket.socket:
    """Next connection, non-blocking and close-on-exec."""
    while True:
        await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            await anyio.wait_readable(listener)
            continue
        conn.setblocking(False)
        return conn


async def connect_unix(path: str | os.PathLike[str]) -> socket.socket:
    """Connect to a unix socket path; a leading NUL byte means an abstract socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        while True:
            try:
                sock.connect(os.fspath(path))
                return sock
            except BlockingIOError as exc:
                # AF_UNIX never returns EINPROGRESS; EAGAIN means the backlog is full.
                if exc.errno != errno.EAGAIN:
                    raise
                await anyio.sleep(0.01)
    except BaseException:
        sock.close()
        raise


async def receive(sock: socket.socket, max_bytes: int) -> bytes:
    """Up to `max_bytes`; b"" at end of stream. Raises OSError (e.g. ECONNRESET)."""
    await anyio.lowlevel.checkpoint_if_cancelled()
    while True:
        try:
            return sock.recv(max_bytes)
        except BlockingIOError:
            await anyio.wait_readable(sock)


async def send_all(sock: socket.socket, data: bytes) -> None:
    """Write all of `data`. Raises OSError (e.g. EPIPE) if the peer is gone."""
    await anyio.lowlevel.checkpoint_if_cancelled()
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view, socket.MSG_NOSIGNAL)
        except BlockingIOError:
            await anyio.wait_writable(sock)
            continue
        view = view[sent:]


def shutdown(sock: socket.socket) -> None:
    """Wake every task blocked on `sock` (reads see EOF, writes fail) before closing it."""
    with contextlib.suppress(OSError):  # not connected (any more)
        sock.shutdown(socket.SHUT_RDWR)
