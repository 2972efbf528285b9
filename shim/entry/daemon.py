"""The serving process: Task service on ttrpc, the FUSE view and the reaper in one event loop.

`start` launched us with the listening socket as fd 3 (or `-socket` names one), cwd = the
first container's bundle, stdio on /dev/null. We run until containerd's Shutdown finds no
container left, or SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from procfs import fuseloop
from procfs.view import View
from shim import priority, trace
from shim.entry import config, logs
from shim.identity import SocketLock, file_identity, instance_dir, socket_path, state_dir
from shim.task.events import Publisher
from shim.task.methods import task_methods, task_services
from shim.task.reaper import Reaper, become_subreaper
from shim.task.service import TaskService
from shim.task.sysinfo_notify import SysinfoNotifier
from shim.transport.ttrpc.server import TtrpcServer

if TYPE_CHECKING:
    from shim.transport.grpc import GrpcServer

log = logging.getLogger("shim")

#: After Shutdown, let the reply reach containerd before the process goes away.
_SHUTDOWN_GRACE = 0.05
#: A shim without containers that hears nothing for this long exits (e.g. `start` printed
#: its address but containerd never dialled it, or never sent Create or Shutdown).
UNUSED_EXIT_ENV = "CONTAINERD_SHIM_LXCFS_UNUSED_EXIT"
_UNUSED_EXIT_DEFAULT = 60.0


def _unused_exit_seconds() -> float:
    try:
        return max(float(os.environ.get(UNUSED_EXIT_ENV, _UNUSED_EXIT_DEFAULT)), 0.5)
    except ValueError:
        return _UNUSED_EXIT_DEFAULT


class _Endpoint:
    """The shim socket's path and record, and whether they are still ours to remove.

    A shim stops being findable (socket and task-api record gone, under `SocketLock`) the
    moment it decides to exit, before it drains: a `start` for the same id then binds a new
    socket instead of handing out this one. The file is removed only if it is still the one
    this process was given: a successor's socket at the same path is left alone.
    """

    def __init__(self, path: str, state: str) -> None:
        self.path, self.state = path, state
        self.identity = file_identity(path)  # live listener: no one else replaced it yet
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        with SocketLock():
            if self.identity is not None and file_identity(self.path) == self.identity:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.state, config.RECORD))

    def remove_state(self, instance: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(instance)
        with SocketLock(), contextlib.suppress(OSError):
            os.rmdir(self.state)  # only once no other shim of the group uses it


def _listener(args: SimpleNamespace, fd: int | None) -> tuple[socket.socket, str]:
    """The listening socket: handed over (`fd`), named by `-socket`, or fd 3 from `start`."""
    if fd is None and args.socket:
        path = args.socket.removeprefix("unix://")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(128)
        return sock, path
    sock = socket.socket(fileno=3 if fd is None else fd)
    # where `start` bound it (containerd 2.3+ may name the directory): the name says
    path = sock.getsockname()
    if not isinstance(path, str) or not path:
        path = socket_path(args.address, args.namespace, args.group or args.id)
    return sock, path


async def _serve(
    args: SimpleNamespace, listener: int | None = None, reaper: Reaper | None = None
) -> None:
    """Serve until idle; a spare brings its own listener fd and its already running reaper."""
    trace.mark("serve: event loop")
    sock, path = _listener(args, listener)
    state = state_dir(args.address, args.namespace, args.group or args.id)
    endpoint = _Endpoint(path, state)
    instance = instance_dir(state, os.getpid())
    own_reaper = reaper is None
    reaper = reaper or Reaper()
    fuseloop.urgent = priority.urgent  # the view yields to RPCs and exits (shim/priority.py)
    view = View(Path(instance, "view"))
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", ""), args.namespace)
    idle = anyio.Event()
    server: TtrpcServer | GrpcServer | None = None

    def stop() -> None:
        """No longer findable, no new connections; calls in flight still get answers."""
        endpoint.release()
        if server is not None:
            server.stop_accepting()
        idle.set()

    try:
        async with anyio.create_task_group() as tg:
            if own_reaper:
                await tg.start(reaper.run)
            trace.mark("serve: reaper")
            await tg.start(view.run)
            trace.mark("serve: view mounted")
            await tg.start(publisher.run)
            sysinfo = SysinfoNotifier(instance, view)  # per process, like the view
            await tg.start(sysinfo.run)
            service = TaskService(
                namespace=args.namespace,
                reaper=reaper,
                view=view,
                publisher=publisher,
                task_group=tg,
                on_idle=stop,
                sysinfo=sysinfo,
            )
            server = _task_server(args.task_api, service)
            await tg.start(server.serve, sock)
            trace.mark("serve: accepting")
            tg.start_soon(_on_signals, stop)
            tg.start_soon(_exit_when_unused, service, stop, _unused_exit_seconds())
            log.info("serving task API %s on %s, view at %s", args.task_api, path, view.mountpoint)
            await idle.wait()
            trace.mark("serve: idle")
            await publisher.flush()
            await anyio.sleep(_SHUTDOWN_GRACE)
            tg.cancel_scope.cancel()
    finally:
        sock.close()
        endpoint.release()
        endpoint.remove_state(instance)
        log.info("shim exited")
        trace.mark("serve: exit")


async def _exit_when_unused(service: TaskService, stop: Callable[[], None], seconds: float) -> None:
    """Exit after `seconds` without a container and without a request (see UNUSED_EXIT_ENV)."""
    while True:
        await anyio.sleep(min(seconds, 5.0))
        if service.has_containers():
            continue
        quiet = time.monotonic() - service.last_request
        if quiet >= seconds:
            log.warning("no container and no request for %.0f s: exiting", quiet)
            stop()
            return


def _task_server(task_api: str, service: TaskService) -> TtrpcServer | GrpcServer:
    """The Task service on the transport `start` chose; events use ttrpc Forward either way."""
    if task_api == config.V3_GRPC:
        from shim.transport.grpc import GrpcServer  # grpclib only when asked for

        return GrpcServer(task_methods(service))
    return TtrpcServer(task_services(service))


async def _on_signals(stop: Callable[[], None]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop()
            return


def _run(main: Callable[..., Awaitable[int | None]], *args: object) -> int:
    """The serving process's event loop, as a child subreaper that ignores SIGPIPE:
    `main`'s status, or 1 after logging what crashed it."""
    become_subreaper()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        return anyio.run(main, *args, backend="asyncio") or 0
    except Exception:
        log.exception("shim failed")
        return 1


def serve(args: SimpleNamespace) -> int:
    """The serving process exec'd by `start` (no zygote) or run by hand."""
    logs.setup(args.namespace, args.id, args.debug)
    return _run(_serve, args)


def serve_spare(ready: int, take: Callable[[], tuple[list[str], int]]) -> int:
    """A zygote's spare (shim/entry/zygote.py): the same serving process, with the event loop,
    the subreaper and the reaper set up *before* a `start` hands over its request (~5 ms
    less on containerd's create path). `take()` is called once `ready` is readable; it
    gives the shim's argv and listener fd, or raises EOFError when the zygote went away."""
    return _run(_spare, ready, take)


async def _spare(ready: int, take: Callable[[], tuple[list[str], int]]) -> int:
    from shim.entry.args import UsageError, parse

    reaper = Reaper()
    async with anyio.create_task_group() as tg:
        await tg.start(reaper.run)
        try:
            await anyio.wait_readable(ready)
            try:
                argv, listener = take()
            except EOFError:
                return 0
            trace.mark("serve: handed over")
            try:
                args = parse(argv)
            except UsageError as e:
                os.close(listener)
                print(f"spare: {e}", file=sys.stderr)
                return 2
            logs.setup(args.namespace, args.id, args.debug)
            await _serve(args, listener, reaper)
            return 0
        finally:
            tg.cancel_scope.cancel()  # the reaper
