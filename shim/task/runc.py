"""The runc command line, driven through the shim's single reaper.

Every invocation is a child of the shim; its exit comes from `Reaper`, never from
`Popen.wait()`, which would race the subreaper's `waitpid(-1)`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from shim.task.reaper import Reaper

log = logging.getLogger("shim.runc")


class RuncError(Exception):
    """runc failed; the message is runc's own last error (from its JSON log) when there is one."""

    def __init__(self, command: str, message: str, status: int) -> None:
        super().__init__(f"{command} failed: {message}" if message else f"{command} failed")
        self.command = command
        self.detail = message
        self.status = status


async def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    return r, w


def _last_error(log_path: str, offset: int) -> str:
    """The `msg` of the last `"level":"error"` line runc appended to its log since `offset`."""
    message = ""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("level") == "error":
                        message = str(entry.get("msg", ""))
    except OSError:
        pass
    return message


@dataclass
class Runc:
    """runc for one container: global flags as containerd-shim-runc-v2 sets them."""

    reaper: Reaper
    root: str
    log_path: str
    binary: str = "runc"
    systemd_cgroup: bool = False
    env: dict[str, str] = field(
        default_factory=lambda: {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    )

    def _argv(self, args: Sequence[str]) -> list[str]:
        argv = [self.binary, "--root", self.root, "--log", self.log_path, "--log-format", "json"]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        return [*argv, *args]

    async def run(
        self,
        *args: str,
        input: bytes | None = None,
        stdio: tuple[int, int, int] | None = None,
        cwd: str | None = None,
    ) -> bytes:
        """Run runc; return its stdout. `stdio` hands fds to runc (and so to the container)."""
        try:
            offset = os.path.getsize(self.log_path)
        except OSError:
            offset = 0
        stdin_r = out_r = out_w = err_r = err_w = -1
        to_close: list[int] = []
        try:
            if stdio is None:
                out_r, out_w = _pipe()
                err_r, err_w = _pipe()
                to_close += [out_r, out_w, err_r, err_w]
                if input is not None:
                    stdin_r, stdin_w = os.pipe()
                    to_close += [stdin_r]
                    # small JSON documents: fits in the pipe buffer, written before spawn
                    os.write(stdin_w, input)
                    os.close(stdin_w)
                fds = (stdin_r if input is not None else subprocess.DEVNULL, out_w, err_w)
            else:
                fds = stdio
            proc = subprocess.Popen(
                self._argv(args),
                stdin=fds[0],
                stdout=fds[1],
                stderr=fds[2],
                env=self.env,
                cwd=cwd,
                close_fds=True,
            )
            watch = self.reaper.watch(proc.pid)
            proc.returncode = 0  # the reaper owns this pid; keep Popen from waiting on it
            for fd in (stdin_r, out_w, err_w):
                if fd != -1:
                    os.close(fd)
                    to_close.remove(fd)
            try:
                if stdio is None:
                    async with anyio.create_task_group() as tg:
                        results: dict[str, bytes] = {}

                        async def collect(name: str, fd: int) -> None:
                            results[name] = await _drain(fd)

                        tg.start_soon(collect, "out", out_r)
                        tg.start_soon(collect, "err", err_r)
                    ex = await watch.wait()
                    out, err = results["out"], results["err"]
                else:
                    ex = await watch.wait()
                    out = err = b""
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                raise
        finally:
            for fd in to_close:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if ex.status != 0:
            message = _last_error(self.log_path, offset) or err.decode(errors="replace").strip()
            raise RuncError(args[0], message, ex.status)
        return out

    async def create(
        self,
        id: str,
        bundle: str,
        pid_file: str,
        stdio: tuple[int, int, int] | None,
        *,
        console_socket: str = "",
        no_pivot: bool = False,
        no_new_keyring: bool = False,
    ) -> None:
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        if no_new_keyring:
            args.append("--no-new-keyring")
        await self.run(*args, id, stdio=stdio, cwd=bundle)

    async def exec(
        self,
        id: str,
        process_file: str,
        pid_file: str,
        stdio: tuple[int, int, int] | None,
        *,
        console_socket: str = "",
    ) -> None:
        """`runc exec --detach`: returns once the process runs (re-parented to the shim)."""
        args = ["exec", "--process", process_file, "--detach", "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self.run(*args, id, stdio=stdio)

    async def pause(self, id: str) -> None:
        await self.run("pause", id)

    async def resume(self, id: str) -> None:
        await self.run("resume", id)

    async def update(self, id: str, resources_json: bytes) -> None:
        await self.run("update", "--resources=-", id, input=resources_json)

    async def checkpoint(
        self, id: str, image_path: str, *, work_path: str = "", options: Sequence[str] = ()
    ) -> None:
        args = ["checkpoint", "--image-path", image_path]
        if work_path:
            args += ["--work-path", work_path]
        await self.run(*args, *options, id)

    async def restore(
        self,
        id: str,
        bundle: str,
        image_path: str,
        pid_file: str,
        stdio: tuple[int, int, int] | None,
        *,
        work_path: str = "",
        console_socket: str = "",
        options: Sequence[str] = (),
        no_pivot: bool = False,
    ) -> None:
        """`runc restore --detach`: the restored init becomes the shim's child (subreaper)."""
        args = [
            "restore",
            "--detach",
            "--no-subreaper",
            "--bundle",
            bundle,
            "--pid-file",
            pid_file,
            "--image-path",
            image_path,
        ]
        if work_path:
            args += ["--work-path", work_path]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        await self.run(*args, *options, id, stdio=stdio, cwd=bundle)

    async def start(self, id: str) -> None:
        await self.run("start", id)

    async def kill(self, id: str, sig: int, *, all: bool = False) -> None:
        await self.run("kill", *(["--all"] if all else []), id, str(sig))

    async def delete(self, id: str, *, force: bool = False) -> None:
        await self.run("delete", *(["--force"] if force else []), id)

    async def ps(self, id: str) -> list[int]:
        out = await self.run("ps", "--format", "json", id)
        pids = json.loads(out or b"[]")
        return [int(p) for p in pids or []]

    async def state(self, id: str) -> dict:
        return json.loads(await self.run("state", id))
