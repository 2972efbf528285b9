"""A pre-imported fork server for serving processes ("zygote").

A serving process spends most of its start-up importing (anyio, pyfuse3, betterproto and the
generated messages): ~0.4 s per container on a small node, paid on containerd's create path,
and ~25 MB of private memory per shim. The zygote pays that once: it imports and warms
everything, freezes the GC (so children don't dirty the shared pages on their first
collection), then forks one serving process per `start` request. Every shim is still its
own process: a crash stays in its pod, exactly as with exec'd shims.

Protocol (unix socket, root only): `start` sends one request, NUL-separated fields
`<argc> <argv...> <cwd> <NAME=value...>` (so `start` needs no json), with the shim's listening
socket as SCM_RIGHTS; the zygote double-forks (the shim must not be its child) and answers
the shim's pid in decimal.
The zygote exits after `IDLE_SECONDS` without requests; `start` falls back to exec'ing the
serving process whenever the zygote is not there, and starts a new zygote for next time.

The socket name carries a fingerprint of the code (`zygote_socket` in shim/identity.py), so an
upgraded or edited installation never gets children of an old image.
"""

from __future__ import annotations

import array
import contextlib
import gc
import os
import signal
import socket
import sys

from shim import trace
from shim.identity import SHIM_NAME

IDLE_SECONDS = float(os.environ.get("CONTAINERD_SHIM_LXCFS_ZYGOTE_IDLE", "300"))
_MAX_REQUEST = 1 << 20


def _warm_up() -> None:
    """Import and initialise everything a serving process uses, once, before any fork."""
    import anyio._backends._asyncio  # noqa: F401  (anyio.run imports it lazily)
    import betterproto

    import shim.daemon  # noqa: F401  (the whole serving stack)
    from protos.gen.containerd import events
    from protos.gen.containerd.services.events.ttrpc import v1 as events_svc
    from protos.gen.containerd.task import v2 as api
    from protos.gen.containerd.types import Mount
    from protos.gen.containerd.v1 import types as v1types
    from protos.gen.google.rpc import Status
    from protos.gen.ttrpc import KeyValue, Request, Response

    # betterproto builds each class's field metadata on first use: do it here, not per shim
    for module in (api, events, events_svc, v1types):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, betterproto.Message):
                value().parse(bytes(value()))
    for cls in (Mount, Status, KeyValue, Request, Response):
        cls().parse(bytes(cls()))


def _set_cmdline(argv: list[str]) -> None:
    """Show the child as `containerd-shim-lxcfs-v2 -namespace … -id …` in ps/pgrep.

    The zygote was started with a padded argv, so its argument area has room: overwrite it in
    place (what setproctitle does), NUL-padded, keeping the last byte NUL.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        import ctypes

        title = "\0".join([SHIM_NAME, *argv]).encode() + b"\0"
        size = end - start
        ctypes.memmove(start, title[: size - 1].ljust(size, b"\0"), size)
    except (OSError, ValueError, IndexError):
        pass


def _become_shim(request: dict, listener: int, keep: list[int]) -> None:
    """In the grandchild: turn into the serving process `start` asked for; never returns."""
    status = 1
    try:
        for fd in keep:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if listener != 3:
            os.dup2(listener, 3)
            os.close(listener)
        os.set_inheritable(3, False)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        argv = [str(a) for a in request["argv"]]
        _set_cmdline(argv)
        sys.argv = [SHIM_NAME, *argv]
        from shim.cli import main

        status = main(argv)
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def _recv_request(conn: socket.socket) -> tuple[dict, int]:
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(_MAX_REQUEST, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ValueError("expected exactly one listening socket")
    fields = data.decode().split("\0")
    argc = int(fields[0])
    argv, cwd, env = fields[1 : 1 + argc], fields[1 + argc], fields[2 + argc :]
    request = {"argv": argv, "cwd": cwd, "env": dict(e.split("=", 1) for e in env if "=" in e)}
    return request, fds[0]


def _handle(conn: socket.socket, server: socket.socket) -> None:
    request, listener = _recv_request(conn)
    trace.mark("zygote: request")
    try:
        child = os.fork()
        if child == 0:  # intermediate: detach, fork the shim, report its pid, go
            try:
                os.setsid()
                shim = os.fork()
                if shim == 0:
                    _become_shim(request, listener, [conn.fileno(), server.fileno()])
                conn.sendall(str(shim).encode())
            finally:
                os._exit(0)
        os.waitpid(child, 0)
    finally:
        os.close(listener)


def _peer_is_root(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    _, uid, _ = array.array("i", creds)
    return uid == os.geteuid()


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwinds to serve()'s finally: the socket file goes too


def serve(path: str) -> int:
    """Run the fork server on `path` until idle or SIGTERM; 0 also when another zygote owns it."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _warm_up()
    gc.collect()
    gc.freeze()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
    except OSError:
        server.close()
        return 0  # another zygote of the same code won the race
    try:
        os.chmod(path, 0o600)
        server.listen(64)
        server.settimeout(IDLE_SECONDS)
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                return 0
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError, ValueError):
                    if _peer_is_root(conn):
                        _handle(conn, server)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        server.close()
