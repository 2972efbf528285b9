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
from shim.transport import task_methods, task_services
from shim.ttrpc.server import TtrpcServer

log = logging.getLogger("shim")

#: After Shutdown, let the reply reach containerd before the process goes away.
_SHUTDOWN_GRACE = 0.05


def _listener(args: SimpleNamespace) -> tuple[socket.socket, str]:
    if args.socket:
        path = args.socket.removeprefix("unix://")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(128)
        return sock, path
    sock = socket.socket(fileno=3)
    return sock, socket_path(args.address, args.namespace, args.group or args.id)


async def _serve(args: SimpleNamespace) -> None:
    trace.mark("serve: event loop")
    sock, path = _listener(args)
    state = state_dir(args.address, args.namespace, args.group or args.id)
    reaper = Reaper()
    view = View(Path(state, "view"))
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", ""), args.namespace)
    idle = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(reaper.run)
            trace.mark("serve: reaper")
            await tg.start(view.run)
            trace.mark("serve: view mounted")
            await tg.start(publisher.run)
            service = TaskService(namespace=args.namespace, reaper=reaper, view=view,
                                  publisher=publisher, task_group=tg, on_idle=idle.set)
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


def serve(args: SimpleNamespace) -> int:
    logs.setup(args.namespace, args.id, args.debug)
    become_subreaper()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        anyio.run(_serve, args, backend="asyncio")
    except Exception:
        log.exception("shim failed")
        return 1
    return 0
