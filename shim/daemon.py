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
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import anyio
import anyio.abc

from procfs.view import View
from shim import config, logs, trace
from shim.events import Publisher
from shim.identity import socket_path, state_dir
from shim.reaper import Reaper, become_subreaper
from shim.service import TaskService
from shim.sysinfo_notify import SysinfoNotifier
from shim.transport import task_methods, task_services
from shim.ttrpc.server import TtrpcServer

log = logging.getLogger("shim")

#: After Shutdown, let the reply reach containerd before the process goes away.
_SHUTDOWN_GRACE = 0.05


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


async def _serve(args: SimpleNamespace, listener: int | None = None,
                 reaper: Reaper | None = None) -> None:
    """Serve until idle; a spare brings its own listener fd and its already running reaper."""
    trace.mark("serve: event loop")
    sock, path = _listener(args, listener)
    state = state_dir(args.address, args.namespace, args.group or args.id)
    own_reaper = reaper is None
    reaper = reaper or Reaper()
    view = View(Path(state, "view"))
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", ""), args.namespace)
    idle = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            if own_reaper:
                await tg.start(reaper.run)
            trace.mark("serve: reaper")
            await tg.start(view.run)
            trace.mark("serve: view mounted")
            await tg.start(publisher.run)
            sysinfo = SysinfoNotifier(state, view)
            await tg.start(sysinfo.run)
            service = TaskService(namespace=args.namespace, reaper=reaper, view=view,
                                  publisher=publisher, task_group=tg, on_idle=idle.set,
                                  sysinfo=sysinfo)
            await tg.start(_task_server(args.task_api, service), sock)
            trace.mark("serve: accepting")
            tg.start_soon(_on_signals, idle)
            log.info("serving task API %s on %s, view at %s", args.task_api, path,
                     view.mountpoint)
            await idle.wait()
            trace.mark("serve: idle")
            await publisher.flush()
            await anyio.sleep(_SHUTDOWN_GRACE)
            tg.cancel_scope.cancel()
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(state, config.RECORD))
        with contextlib.suppress(OSError):
            os.rmdir(state)
        log.info("shim exited")
        trace.mark("serve: exit")


def _task_server(task_api: str, service: TaskService) -> Callable[..., Awaitable[None]]:
    """The Task service on the transport `start` chose; events use ttrpc Forward either way."""
    if task_api == config.V3_GRPC:
        from shim.grpc_transport import GrpcServer  # grpclib only when asked for

        return GrpcServer(task_methods(service)).serve
    return TtrpcServer(task_services(service)).serve


async def _on_signals(idle: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            idle.set()
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
    """A zygote's spare (shim/zygote.py): the same serving process, with the event loop,
    the subreaper and the reaper set up *before* a `start` hands over its request (~5 ms
    less on containerd's create path). `take()` is called once `ready` is readable; it
    gives the shim's argv and listener fd, or raises EOFError when the zygote went away."""
    return _run(_spare, ready, take)


async def _spare(ready: int, take: Callable[[], tuple[list[str], int]]) -> int:
    from shim.cli import UsageError, parse

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
