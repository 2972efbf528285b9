"""A process's stdio: containerd's FIFOs handed straight to runc (no copy loop).

containerd-shim-runc-v2 creates pipes and copies FIFO<->pipe in goroutines. For plain FIFOs
the kernel can do that job: the container gets the FIFO itself, which costs no CPU per byte
and no task in the shim, and keeps the semantics that matter:
- stdout/stderr: the shim holds a read end, so the container never gets EPIPE when the
  client detaches; the client sees EOF when the last writer in the container exits;
- stdin: the shim holds a write end, so the container does not see EOF between client
  attachments; CloseIO drops it, and the process sees EOF once the client closed its end.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from shim.errors import RpcError


def _open_fifo(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)


def _blocking(fd: int) -> int:
    os.set_blocking(fd, True)
    return fd


def _check_scheme(path: str) -> None:
    if not path:
        return
    scheme = urlparse(path).scheme
    if scheme not in ("", "fifo"):
        raise RpcError.unimplemented(f"stdio scheme {scheme!r} is not supported yet")


@dataclass
class ProcessIO:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    #: fds runc (and so the container) gets as 0, 1, 2
    child: tuple[int, int, int] = (-1, -1, -1)
    #: fds the shim keeps: stdin writer (until CloseIO), stdout/stderr readers
    _held: dict[str, int] = field(default_factory=dict)
    _child_owned: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, stdin: str, stdout: str, stderr: str, terminal: bool) -> ProcessIO:
        if terminal:
            raise RpcError.unimplemented("terminal (pty) processes are not supported yet")
        for path in (stdin, stdout, stderr):
            _check_scheme(path)
        io = cls(stdin, stdout, stderr, terminal)
        try:
            io._open()
        except BaseException:
            io.close()
            raise
        return io

    def _devnull(self) -> int:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._child_owned.append(fd)
        return fd

    def _writer(self, path: str, key: str) -> int:
        reader = _open_fifo(path, os.O_RDONLY)
        self._held[key] = reader
        writer = _blocking(_open_fifo(path, os.O_WRONLY))
        self._child_owned.append(writer)
        return writer

    def _open(self) -> None:
        path = urlparse(self.stdin).path if self.stdin else ""
        if path:
            reader = _open_fifo(path, os.O_RDONLY)
            self._child_owned.append(reader)
            self._held["stdin"] = _open_fifo(path, os.O_WRONLY)
            in_fd = _blocking(reader)
        else:
            in_fd = self._devnull()
        out_fd = self._writer(urlparse(self.stdout).path, "stdout") if self.stdout else \
            self._devnull()
        if self.stderr and self.stderr == self.stdout:
            err_fd = out_fd
        elif self.stderr:
            err_fd = self._writer(urlparse(self.stderr).path, "stderr")
        else:
            err_fd = self._devnull()
        self.child = (in_fd, out_fd, err_fd)

    def release_child_fds(self) -> None:
        """After runc has passed the fds on to the container, the shim's copies must go."""
        for fd in self._child_owned:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child_owned.clear()

    def close_stdin(self) -> None:
        fd = self._held.pop("stdin", None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self.release_child_fds()
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held.clear()
