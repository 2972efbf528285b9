"""Terminals: runc's console socket, the pty master it hands over, and copying bytes.

runc (`--console-socket`) connects once and sends the pty master as the single SCM_RIGHTS fd
of one message (runc-facts.md §3). The shim then owns the master: it copies the stdin FIFO
into it and its output to stdout, and resizes it. Copies are plain nonblocking reads/writes
driven by `anyio.wait_readable`/`wait_writable`: no threads.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import shutil
import socket
import struct
import tempfile
import termios

import anyio

_CHUNK = 32 * 1024
#: How long runc may take to send the master after it returned (it sends before exiting).
_RECEIVE_TIMEOUT = 10.0


class ConsoleSocket:
    """A listening socket in a fresh temp dir (`pty*/pty.sock`), removed by close()."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="pty", dir=os.environ.get("XDG_RUNTIME_DIR"))
        self.path = os.path.join(self._dir, "pty.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(self.path)
            self._sock.listen(1)
            self._sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    async def receive_master(self) -> int:
        """Accept runc's connection and return the pty master fd (nonblocking, cloexec)."""
        with anyio.fail_after(_RECEIVE_TIMEOUT):
            while True:
                try:
                    conn, _ = self._sock.accept()
                    break
                except BlockingIOError:
                    await anyio.wait_readable(self._sock)
            with conn:
                conn.setblocking(False)
                fds = array.array("i")
                while True:
                    try:
                        _, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize * 4))
                        break
                    except BlockingIOError:
                        await anyio.wait_readable(conn)
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if len(ancdata) != 1 or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError(errno.EPROTO, f"console socket: expected 1 fd, got {len(fds)}")
        master = fds[0]
        os.set_blocking(master, False)
        os.set_inheritable(master, False)
        return master

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def resize(master: int, width: int, height: int) -> None:
    """TIOCSWINSZ: `width` columns, `height` rows."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            await anyio.wait_writable(fd)
            continue
        view = view[n:]


async def copy(src: int, dst: int) -> None:
    """Copy until EOF (or EIO: a pty master whose slave side is all closed) on `src`.

    Both fds must be nonblocking. Write errors on `dst` (reader gone) end the copy quietly
    after draining is no longer possible.
    """
    while True:
        try:
            chunk = os.read(src, _CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(src)
            continue
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        if not chunk:
            return
        try:
            await _write_all(dst, chunk)
        except (BrokenPipeError, OSError) as e:
            if e.errno in (errno.EPIPE, errno.EIO, errno.EBADF):
                return
            raise
