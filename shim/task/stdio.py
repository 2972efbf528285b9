"""A process's stdio: FIFOs, `file://` logs, `binary://` loggers and terminals.

containerd-shim-runc-v2 creates pipes and copies FIFO<->pipe in goroutines. For plain FIFOs
(and `file://` logs) the kernel can do that job: the container gets the FIFO (or file)
itself, which costs no CPU per byte and no task in the shim, and keeps the semantics that
matter:
- stdout/stderr: the shim holds a read end, so the container never gets EPIPE when the
  client detaches; the client sees EOF when the last writer in the container exits;
- stdin: the shim holds a write end, so the container does not see EOF between client
  attachments; CloseIO drops it, and the process sees EOF once the client closed its end.

`binary://` loggers get the read ends of two pipes as fds 3 and 4 and signal readiness on fd
5; the container writes into the pipes directly. Only a terminal needs copying: runc hands
the pty master over a console socket and the shim copies stdin -> master -> stdout
(shim/task/console.py), as anyio tasks in the service's task group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlparse

import anyio
import anyio.abc

from shim.task import console
from shim.task.reaper import Reaper, Watch
from shim.transport.errors import RpcError

log = logging.getLogger("shim.stdio")

#: Go shim: how long a logger gets after SIGTERM before SIGKILL.
_LOGGER_TERM_TIMEOUT = 12.0
#: How long a logger may take to signal readiness on fd 5 (the Go shim waits forever).
_LOGGER_READY_TIMEOUT = 30.0
#: Delete waits this long for a terminal's output to drain.
_DRAIN_TIMEOUT = 10.0


def _open_fifo(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)


def _blocking(fd: int) -> int:
    os.set_blocking(fd, True)
    return fd


@dataclass(frozen=True)
class IOContext:
    """What stdio setup needs beyond the paths: pipe owner and the logger's environment."""

    container_id: str = ""
    namespace: str = ""
    uid: int = 0
    gid: int = 0


@dataclass
class ProcessIO:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    #: fds runc (and so the container) gets as 0, 1, 2; None for a terminal (runc: /dev/null)
    child: tuple[int, int, int] | None = (-1, -1, -1)
    console: console.ConsoleSocket | None = None
    #: set when a terminal's output copy has finished (at once for everything else)
    drained: anyio.Event = field(default_factory=anyio.Event)
    #: fds the shim keeps: stdin writer (until CloseIO), stdout/stderr readers
    _held: dict[str, int] = field(default_factory=dict)
    _child_owned: list[int] = field(default_factory=list)
    #: terminal: where the copies read from / write to (owned by this object)
    _term_in: int = -1
    _term_out: int = -1
    _master: int = -1
    _copy_scope: anyio.CancelScope | None = None
    _logger: tuple[int, Watch] | None = None

    # -- setup -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        stdin: str,
        stdout: str,
        stderr: str,
        terminal: bool,
        *,
        reaper: Reaper,
        ctx: IOContext = IOContext(),
    ) -> ProcessIO:
        """Prepare stdio for runc; a `binary://` logger is running and ready on return."""
        io = cls(stdin, stdout, stderr, terminal)
        try:
            scheme = urlparse(stdout).scheme if stdout else ""
            if scheme in ("", "fifo"):
                io._open_fifos(ctx)
            elif scheme == "file":
                io._open_file()
            elif scheme == "binary":
                await io._start_logger(reaper, ctx)
            else:
                raise RpcError.invalid_argument(f"unknown STDIO scheme {scheme}")
            if terminal:
                io.console = console.ConsoleSocket()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await io.aclose()
            raise
        if not terminal:
            io.drained.set()
        return io

    def _devnull(self) -> int:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._child_owned.append(fd)
        return fd

    def _own(self, fd: int) -> int:
        self._child_owned.append(fd)
        return fd

    def _stdin_fd(self) -> int:
        """stdin FIFO reader for the container (or the terminal copy), writer held."""
        path = urlparse(self.stdin).path if self.stdin else ""
        if not path:
            return -1
        reader = _open_fifo(path, os.O_RDONLY)
        self._held["stdin"] = _open_fifo(path, os.O_WRONLY)
        return reader

    def _fifo_writer(self, path: str, key: str) -> int:
        self._held[key] = _open_fifo(path, os.O_RDONLY)
        return _open_fifo(path, os.O_WRONLY)

    def _open_fifos(self, ctx: IOContext) -> None:
        """containerd's FIFOs themselves become the container's stdio (no copy).

        With IoUid/IoGid the FIFOs are chowned to them: runc.v2 hands the container pipes it
        chowns, so a process of that user can reopen /dev/stdout (/proc/self/fd/1); these
        FIFOs are containerd's private per-task files, owned by nobody else.
        """
        stdin = self._stdin_fd()
        out_path = urlparse(self.stdout).path if self.stdout else ""
        if self.terminal:
            self._term_in = stdin
            if out_path:
                self._term_out = self._fifo_writer(out_path, "stdout")
            self.child = None
            return
        in_fd = _blocking(self._own(stdin)) if stdin >= 0 else self._devnull()
        out_fd = (
            _blocking(self._own(self._fifo_writer(out_path, "stdout")))
            if out_path
            else self._devnull()
        )
        if self.stderr and self.stderr == self.stdout:
            err_fd = out_fd
        elif self.stderr:
            err_fd = _blocking(self._own(self._fifo_writer(urlparse(self.stderr).path, "stderr")))
        else:
            err_fd = self._devnull()
        self.child = (in_fd, out_fd, err_fd)
        if ctx.uid or ctx.gid:
            fifos = {
                fd
                for fd, is_fifo in (
                    (in_fd, stdin >= 0),
                    (out_fd, bool(out_path)),
                    (err_fd, bool(self.stderr)),
                )
                if is_fifo
            }
            for fd in fifos:  # never /dev/null; stdout and stderr may share one
                os.fchown(fd, ctx.uid, ctx.gid)

    def _open_file(self) -> None:
        """`file:///abs/path`: stdout and stderr both append to the file (handed to runc)."""
        path = urlparse(self.stdout).path
        if not os.path.isabs(path):
            raise RpcError.invalid_argument(f"file:// stdio needs an absolute path: {path!r}")
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        stdin = self._stdin_fd()
        if self.terminal:
            self._term_in, self._term_out, self.child = stdin, fd, None
            return
        self._own(fd)
        in_fd = _blocking(self._own(stdin)) if stdin >= 0 else self._devnull()
        self.child = (in_fd, fd, fd)

    async def _start_logger(self, reaper: Reaper, ctx: IOContext) -> None:
        """`binary:///path?k=v`: spawn the logger with fds 3/4 (stdout/stderr), 5 (ready)."""
        url = urlparse(self.stdout)
        args: list[str] = []
        for k, v in parse_qsl(url.query, keep_blank_values=True):
            args += [k, v] if v else [k]
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ready_r, ready_w = os.pipe()
        for fd in (out_w, err_w):
            self._own(fd)
            if ctx.uid or ctx.gid:
                os.fchown(fd, ctx.uid, ctx.gid)
        env = dict(os.environ, CONTAINER_ID=ctx.container_id, CONTAINER_NAMESPACE=ctx.namespace)
        try:
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                pid = os.posix_spawn(
                    url.path,
                    [url.path, *args],
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, devnull, 0),
                        (os.POSIX_SPAWN_DUP2, devnull, 1),
                        (os.POSIX_SPAWN_DUP2, devnull, 2),
                        (os.POSIX_SPAWN_DUP2, out_r, 3),
                        (os.POSIX_SPAWN_DUP2, err_r, 4),
                        (os.POSIX_SPAWN_DUP2, ready_w, 5),
                    ],
                )
            finally:
                os.close(devnull)
        except OSError as e:
            raise RpcError.unknown(f"failed to start logging binary {url.path}: {e}") from e
        finally:
            for fd in (out_r, err_r, ready_w):
                os.close(fd)
        self._logger = (pid, reaper.watch(pid))
        try:
            os.set_blocking(ready_r, False)
            with anyio.move_on_after(_LOGGER_READY_TIMEOUT) as timeout:
                while True:
                    try:
                        os.read(ready_r, 1)
                        break
                    except BlockingIOError:
                        await anyio.wait_readable(ready_r)
            if timeout.cancelled_caught:
                raise RpcError.deadline_exceeded(f"logging binary {url.path} never became ready")
        finally:
            os.close(ready_r)
        # stdin: the Go shim gives a process with a logger no stdin either
        self.child = (self._devnull(), out_w, err_w) if not self.terminal else None
        if self.terminal:
            self._term_out = out_w
            self._child_owned.remove(out_w)

    # -- terminal ----------------------------------------------------------------------------

    async def attach_console(self, tg: anyio.abc.TaskGroup) -> None:
        """After runc returned: take the pty master and start copying (terminal only)."""
        assert self.console is not None
        try:
            self._master = await self.console.receive_master()
        finally:
            self.console.close()
            self.console = None
        if self._term_out >= 0:
            os.set_blocking(self._term_out, False)
        await tg.start(self._copy_console)

    async def _copy_console(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.CancelScope() as scope:
            self._copy_scope = scope
            task_status.started()
            async with anyio.create_task_group() as tg:
                if self._term_in >= 0:
                    tg.start_soon(console.copy, self._term_in, self._master)
                if self._term_out >= 0:
                    await console.copy(self._master, self._term_out)
                    # as runc.v2: output ends with the process, so close our end of stdout
                    # now; containerd 2.x's ctr waits for that EOF before it deletes the exec
                    out, self._term_out = self._term_out, -1
                    with contextlib.suppress(OSError):
                        os.close(out)
                else:
                    await anyio.sleep_forever()
                tg.cancel_scope.cancel()  # output ended: the process is gone
        self.drained.set()

    def resize(self, width: int, height: int) -> None:
        if self._master >= 0:
            console.resize(self._master, width, height)

    # -- teardown ----------------------------------------------------------------------------

    def release_child_fds(self) -> None:
        """After runc has passed the fds on to the container, the shim's copies must go."""
        for fd in set(self._child_owned):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child_owned.clear()

    def close_stdin(self) -> None:
        fd = self._held.pop("stdin", None)
        if fd is not None:
            os.close(fd)

    async def aclose(self, drain: bool = False) -> None:
        """Close everything; `drain`: first let a terminal's output finish (bounded)."""
        if drain:
            with anyio.move_on_after(_DRAIN_TIMEOUT):
                await self.drained.wait()
        if self._copy_scope is not None:
            self._copy_scope.cancel()
        self.drained.set()
        if self.console is not None:
            self.console.close()
            self.console = None
        self.release_child_fds()
        for fd in (*self._held.values(), self._term_in, self._term_out, self._master):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._held.clear()
        self._term_in = self._term_out = self._master = -1
        if self._logger is not None:
            pid, watch = self._logger
            self._logger = None
            await _stop_logger(pid, watch)


async def _stop_logger(pid: int, watch: Watch) -> None:
    """As the Go shim: SIGTERM so the logger can flush, SIGKILL if it takes too long."""
    with anyio.CancelScope(shield=True):
        if watch.event.is_set():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with anyio.move_on_after(_LOGGER_TERM_TIMEOUT):
            await watch.wait()
            return
        log.warning("logging binary %d ignored SIGTERM, killing it", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await watch.wait()
