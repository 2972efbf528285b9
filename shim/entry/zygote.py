"""A pre-imported fork server for serving processes ("zygote"), with one warm spare.

A serving process spends most of its start-up importing (anyio, pyfuse3, betterproto and the
generated messages): ~0.4 s per container on a small node, paid on containerd's create path,
and ~25 MB of private memory per shim. The zygote pays that once: it imports and warms
everything, freezes the GC (so children don't dirty the shared pages on their first
collection), then forks serving processes. Every shim is still its own process: a crash
stays in its pod, exactly as with exec'd shims.

Forking is itself on the critical path (two forks of a large process, ~5 ms), and so is a
serving process's own set-up (event loop, subreaper, reaper: ~5 ms more), so the zygote keeps
one **spare** ahead of time: a process that already left the zygote (double fork, new session,
parent init), set all that up (`serve_spare` in shim/entry/daemon.py), and waits in its event loop
on a socketpair. `start` waits only for the hand-over; the spare then takes on the request's
cwd, environment and title and serves. The next spare is forked `SPARE_DELAY` after a
hand-over; with none ready (a burst of starts), a fresh one is forked and handed the request.
A spare keeps the zygote's command line (`ps` shows it as a second `-zygote` process, and
`install.sh` stops both alike) and exits when the zygote closes its end.

Protocol (unix socket; callers of our uid in our namespaces and cgroups, others get `0` and
exec the shim themselves): `start` sends one request, NUL-separated fields
`<argc> <argv...> <cwd> <NAME=value...>` (so `start` needs no json), with the shim's listening
socket as SCM_RIGHTS; the zygote answers the shim's pid in decimal. Zygote to spare: the
request's length (4 bytes) and bytes, the listening socket attached.
The zygote exits after `IDLE_SECONDS` without requests; `start` falls back to exec'ing the
serving process whenever the zygote is not there, and starts a new zygote for next time.

The socket name carries a fingerprint of the code and one of the caller's surroundings
(`zygote_socket`, `process_context` in shim/identity.py): an upgraded or edited installation
never gets children of an old image, and a containerd in another mount namespace, cgroup or
user namespace gets its own zygote, launched by its own `start`, so its shims live where an
exec'd shim would (a forked shim inherits the zygote's namespaces and cgroups, not the caller's).
Forked shims show a clean title (setproctitle), not the zygote's command line.
"""

from __future__ import annotations

import array
import contextlib
import gc
import os
import signal
import socket
import sys
import time

from shim import trace
from shim.identity import SHIM_NAME, SocketLock, file_identity, process_context

IDLE_SECONDS = float(os.environ.get("CONTAINERD_SHIM_LXCFS_ZYGOTE_IDLE", "300"))
#: After a hand-over, wait this long before forking the next spare: the fork would compete
#: for the CPU with the shim that just started (and with containerd creating its container).
SPARE_DELAY = 0.05
_MAX_REQUEST = 1 << 20


def _warm_up() -> None:
    """Import and initialise everything a serving process uses, once, before any fork."""
    import anyio._backends._asyncio  # noqa: F401  (anyio.run imports it lazily)
    import betterproto

    import shim.entry.daemon  # noqa: F401  (the whole serving stack)
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
    with contextlib.suppress(ImportError):
        import setproctitle  # noqa: F401  (children set their titles with it)


def _set_title(argv: list[str]) -> None:
    """Show the child as `containerd-shim-lxcfs-v2 -namespace … -id …` in ps/pgrep.

    setproctitle rewrites the argument area (moving the environment out of the way when the
    title needs more room), as one string: /proc/<pid>/cmdline holds the title with spaces.
    """
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(" ".join([SHIM_NAME, *argv]))


def _assume(request: dict) -> list[str]:
    """Take on the process-wide identity `start` asked for: title, cwd, environment; argv.

    The title first: setproctitle's first call finds the room for it in the original
    argument and environment area, which clearing the environment would scatter.
    """
    argv = [str(a) for a in request["argv"]]
    _set_title(argv)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [SHIM_NAME, *argv]
    return argv


def _recv_request(conn: socket.socket) -> tuple[dict, int]:
    """One request from `start`: (parsed request, listening socket fd)."""
    data, listener = _recv_raw(conn)
    try:
        return _parse(data), listener
    except ValueError:
        os.close(listener)
        raise


def _recv_raw(conn: socket.socket, size: int = _MAX_REQUEST) -> tuple[bytes, int]:
    """Up to `size` bytes and the one fd that must come with them (ValueError otherwise)."""
    data, fds, _, _ = socket.recv_fds(conn, size, 2)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ValueError("expected exactly one listening socket")
    return data, fds[0]


def _parse(data: bytes) -> dict:
    try:
        fields = data.decode().split("\0")
        argc = int(fields[0])
        argv, cwd, env = fields[1 : 1 + argc], fields[1 + argc], fields[2 + argc :]
    except (UnicodeDecodeError, ValueError, IndexError) as e:
        raise ValueError(f"malformed request: {e}") from e
    return {"argv": argv, "cwd": cwd, "env": dict(e.split("=", 1) for e in env if "=" in e)}


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _take(ctl: socket.socket) -> tuple[list[str], int]:
    """In a spare whose control socket is readable: the hand-over, as (argv, listener fd).

    EOFError when the zygote is gone (idle exit, SIGTERM): so is its spare.
    """
    try:
        try:
            header, listener = _recv_raw(ctl, 4)
        except ValueError as e:
            raise EOFError from e  # nothing came: the zygote closed its end
        header += _recv_exactly(ctl, 4 - len(header))
        request = _parse(_recv_exactly(ctl, int.from_bytes(header, "little")))
    finally:
        ctl.close()
    os.set_inheritable(listener, False)  # received fds are inheritable: keep it from runc
    return _assume(request), listener


def _wait_as_spare(ctl: socket.socket, close: list[int]) -> None:
    """In a spare: run the serving process's event loop and reaper ahead of the request
    (shim/entry/daemon.py's serve_spare), which `_take` then delivers; never returns."""
    status = 1
    try:
        for fd in close:
            os.close(fd)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        from shim.entry import daemon

        status = daemon.serve_spare(ctl.fileno(), lambda: _take(ctl))
    except BaseException:
        status = 1
    finally:
        os._exit(status)


class _Spare:
    """A serving process forked ahead of its request (see the module docstring)."""

    def __init__(self, pid: int, ctl: socket.socket) -> None:
        self.pid, self.ctl = pid, ctl

    @classmethod
    def fork(cls, server: socket.socket) -> _Spare:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child = os.fork()
            if child == 0:  # intermediate: new session, fork the spare, report its pid, go
                try:
                    os.setsid()
                    spare = os.fork()
                    if spare == 0:
                        _wait_as_spare(theirs, [ours.fileno(), server.fileno()])
                    theirs.sendall(str(spare).encode())
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
            ours.settimeout(5)
            reply = ours.recv(32)
            if not reply.isdigit():
                raise OSError("the spare's intermediate process failed")
            return cls(int(reply), ours)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()

    def take(self, data: bytes, listener: int) -> bool:
        """Hand over one request; False if the spare is gone (killed meanwhile)."""
        try:
            socket.send_fds(self.ctl, [len(data).to_bytes(4, "little"), data], [listener])
            return True
        except OSError:
            return False
        finally:
            self.ctl.close()  # the spare has what it needs; a dead one is reaped by init


def _handle(conn: socket.socket, server: socket.socket, spare: _Spare | None) -> _Spare | None:
    """Serve one `start`: hand its request to the spare (or a fresh one); reply the pid.

    Returns the spare left for the next request: None when this one was used, so the
    caller forks the next after the reply is out.
    """
    data, listener = _recv_raw(conn)
    try:
        _parse(data)  # a malformed request is refused here, not in a shim
        trace.mark("zygote: request")
        if spare is None or not spare.take(data, listener):
            spare = _Spare.fork(server)
            if not spare.take(data, listener):
                raise OSError("a fresh spare died before its hand-over")
        conn.sendall(str(spare.pid).encode())
        return None
    finally:
        os.close(listener)


def _peer_may_fork(conn: socket.socket, context: str) -> bool:
    """A `start` of our uid in the same namespaces and cgroups (identity.process_context):
    a shim forked for anyone else would live where containerd would not have exec'd it."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid, _ = array.array("i", creds)
    return uid == os.geteuid() and process_context(pid) == context


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwinds to serve()'s finally: the socket file goes too


def serve(path: str) -> int:
    """Run the fork server on `path` until idle or SIGTERM; 0 also when another zygote owns it."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _warm_up()
    gc.collect()
    gc.freeze()
    context = process_context()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with SocketLock():  # bind to listen: `start` must never see our socket refuse
        try:
            server.bind(path)
        except OSError:
            server.close()
            return 0  # another zygote of the same code won the race
        os.chmod(path, 0o600)
        server.listen(64)
        identity = file_identity(path)
    try:
        spare: _Spare | None = None
        last_request = time.monotonic()
        while True:
            # the next spare is forked once the last shim had SPARE_DELAY to start alone;
            # idleness counts from the last request, not the last connect: `start` probes
            # every zygote socket when it sweeps dead ones, which must not keep us alive
            if spare is None:
                timeout = SPARE_DELAY
            else:
                timeout = IDLE_SECONDS - (time.monotonic() - last_request)
                if timeout <= 0:
                    return 0
            server.settimeout(timeout)
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if spare is not None:
                    return 0
                try:
                    spare = _Spare.fork(server)
                except OSError:
                    return 0  # cannot fork: `start` execs shims until a new zygote runs
                continue
            with conn:
                conn.settimeout(5)
                if _peer_may_fork(conn, context):
                    with contextlib.suppress(OSError, ValueError, EOFError):
                        spare = _handle(conn, server, spare)
                        last_request = time.monotonic()
                else:  # `start` execs the shim itself
                    with contextlib.suppress(OSError):
                        conn.sendall(b"0")
    finally:
        with SocketLock():  # only our own file: never a successor's at the same path
            if file_identity(path) == identity:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        server.close()
        if spare is not None:
            spare.ctl.close()  # EOF: the spare exits
