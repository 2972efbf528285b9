"""`start`: find or launch the serving process for a container and print its address.

containerd reads stdout and stderr *together* and waits for both to close, so this prints
nothing but the address and the daemon gets /dev/null for its stdio (it logs to the bundle's
`log` fifo). Stdlib only: this runs once per container on the create path.

stdin is containerd 2.3+'s BootstrapParams or an older containerd's options Any
(shim/entry/bootstrap.py); the answer is a BootstrapResult for the former, the plain address or
bootstrap JSON for the latter, for the task API shim/entry/config.py picks.
"""

from __future__ import annotations

import _socket
import errno
import os
import sys
from types import SimpleNamespace

from shim import trace
from shim.entry import bootstrap, config, shimcgroup, startlog
from shim.identity import (
    SHIM_NAME,
    STATE_DIR,
    ZYGOTE_PREFIX,
    SocketLock,
    group_annotations,
    group_id,
    instance_alive,
    quietly,
    shim_alive,
    socket_path,
    state_dir,
    zygote_socket,
)

#: containerd's own start timeout is long; a live shim answers a connect at once.
_PROBE_TIMEOUT = 0.1


def _bind(path: str) -> _socket.socket | None:
    """Bind the shim socket; None when a live shim already owns it (call under SocketLock).

    A shim that got its Shutdown removed its socket before answering, so "alive" here means
    "can still serve a Create", and a refused probe means a dead shim's leftover file.
    """
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    for _ in range(2):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE:
                raise
            if shim_alive(path, _PROBE_TIMEOUT):
                return None
            os.unlink(path)  # stale socket of a dead shim
            continue
        os.chmod(path, 0o600)
        sock.listen(128)
        return sock
    raise OSError(errno.EADDRINUSE, f"cannot bind {path}")


def _write_address(bundle: str, address: str) -> None:
    """containerd 1.6/1.7 read `<bundle>/address` to reconnect after a restart."""
    target = os.path.join(bundle, "address")
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(address)
    os.chmod(tmp, 0o666)
    os.replace(tmp, target)


def _self_command() -> list[str]:
    """How to run this program again (keeps `containerd-shim-lxcfs-v2` in the process name)."""
    argv0 = os.path.abspath(sys.argv[0])
    if os.path.basename(argv0).startswith("containerd-shim-lxcfs") and os.access(argv0, os.X_OK):
        return [argv0]
    return [sys.executable, "-I", "-m", "shim"]


def _remove_dead_zygote_sockets() -> None:
    """Sockets of zygotes that were killed outright (SIGKILL, OOM): nothing listens on them.

    Called under SocketLock, which a zygote holds from bind to listen: a refused connect is
    a dead zygote's file, never one that is about to listen.
    """
    try:
        names = os.listdir(STATE_DIR)
    except OSError:
        return
    for name in names:
        if name.startswith(ZYGOTE_PREFIX) and name.endswith(".sock"):
            path = os.path.join(STATE_DIR, name)
            if not shim_alive(path, _PROBE_TIMEOUT):
                quietly(os.unlink, path)


def _launch_zygote(path: str) -> None:
    """Start a fork server for the next containers; this one does not wait for it."""
    import subprocess

    try:
        os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
        zygote = subprocess.Popen(
            [*_self_command(), "-zygote", path],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        zygote.returncode = 0  # it outlives us
    except OSError:
        pass  # this container is served anyway: the zygote only speeds up the next ones


def _fork_from_zygote(argv: list[str], bundle: str, sock: _socket.socket) -> int | None:
    """Ask the zygote to fork the serving process; None: exec it ourselves this time."""
    if os.environ.get("CONTAINERD_SHIM_LXCFS_ZYGOTE", "1") == "0":
        return None
    path = zygote_socket()
    client = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    client.settimeout(5)
    try:
        try:
            client.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            with SocketLock():
                _remove_dead_zygote_sockets()  # this one's too, if it was killed
            _launch_zygote(path)
            return None
        except OSError:
            return None
        request = _zygote_request(argv, bundle)
        try:
            client.sendmsg(
                [request],
                [
                    (
                        _socket.SOL_SOCKET,
                        _socket.SCM_RIGHTS,
                        sock.fileno().to_bytes(4, sys.byteorder),
                    )
                ],
            )
            reply = client.recv(64)
        except OSError:
            return None
    finally:
        client.close()
    return int(reply) if reply.isdigit() and int(reply) > 0 else None


def _zygote_request(argv: list[str], bundle: str) -> bytes:
    """argv, cwd and environment as NUL-separated fields (no json import on this path)."""
    env = [f"{k}={v}" for k, v in os.environ.items()]
    return "\0".join([str(len(argv)), *argv, bundle, *env]).encode()


def _exec_daemon(argv: list[str], bundle: str, sock: _socket.socket) -> int:
    """The serving process as a fresh interpreter, listener on fd 3 (the Go shim's way)."""
    import subprocess

    if sock.fileno() != 3:
        os.dup2(sock.fileno(), 3)
    child = subprocess.Popen(
        [*_self_command(), *argv],
        cwd=bundle,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(3,),
        start_new_session=True,
    )
    child.returncode = 0  # never waited for: the daemon outlives us (stops Popen's reaping)
    return child.pid


def _copy_oom_score(child: int) -> None:
    """Like the Go shim: one point more likely to be OOM-killed than containerd."""
    try:
        with open(f"/proc/{os.getppid()}/oom_score_adj") as f:
            score = min(int(f.read().strip()) + 1, 1000)
        with open(f"/proc/{child}/oom_score_adj", "w") as f:
            f.write(str(score))
    except (OSError, ValueError):
        pass


def start(args: SimpleNamespace) -> int:
    if not (args.namespace and args.id and args.address):
        print("start needs -namespace, -id and -address", file=sys.stderr)
        return 2
    bundle = os.getcwd()
    try:
        given = bootstrap.parse(config.read_stdin(), args.id, args.namespace)
        mode, note = config.resolve(
            given.options,
            os.environ,
            bootstrap=given.bootstrap,
            containerd_version=given.containerd_version,
        )
        cgroup = str(given.options.get("shim_cgroup", ""))
        if cgroup:
            shimcgroup.check(cgroup)
    except (ValueError, OSError) as e:  # ConfigError, StartInputError, a missing cgroup
        print(f"{SHIM_NAME} start: {e}", file=sys.stderr)
        return 1
    _warn(bundle, args, given, note)
    if given.ttrpc_address:  # the serving process publishes events there
        os.environ["TTRPC_ADDRESS"] = given.ttrpc_address
    group = group_id(args.id, group_annotations(bundle))
    path = socket_path(args.address, args.namespace, group, given.socket_dir)
    state = state_dir(args.address, args.namespace, group)
    with SocketLock():
        try:
            sock = _bind(path)
        except OSError as e:  # e.g. a socket_dir too long for AF_UNIX: one line, not a traceback
            print(f"{SHIM_NAME} start: socket {path}: {e.strerror or e}", file=sys.stderr)
            return 1
        if sock is None:
            served = config.read_record(state) or config.V2
        else:
            try:
                config.write_record(state, mode)
            except BaseException:
                sock.close()
                os.unlink(path)
                raise
    if sock is None:
        # The group's shim already runs: print what *it* serves, whatever the setting is now.
        _answer(bundle, served, path, given.bootstrap)
        return 0
    try:
        argv = [
            "-namespace",
            args.namespace,
            "-id",
            args.id,
            "-address",
            args.address,
            "-group",
            group,
            "-task-api",
            mode,
        ]
        if args.publish_binary:
            argv += ["-publish-binary", args.publish_binary]
        if args.debug or given.debug:
            argv.append("-debug")
        trace.mark("start: socket bound")
        pid = _fork_from_zygote(argv, bundle, sock) or _exec_daemon(argv, bundle, sock)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        sock.close()
    if cgroup:
        try:
            shimcgroup.apply(pid, cgroup)
        except OSError as e:  # removed since the check, or not writable
            _kill_launched(pid, path, state)
            print(f"{SHIM_NAME} start: {e}", file=sys.stderr)
            return 1
    _copy_oom_score(pid)
    _answer(bundle, mode, path, given.bootstrap)
    trace.mark("start: address printed")
    return 0


def _kill_launched(pid: int, path: str, state: str) -> None:
    """Undo a launched shim: SIGKILL, then remove what it may have made (view, socket)."""
    import time

    from shim.entry import cleanup
    from shim.task import mountutil

    quietly(os.kill, pid, 9)
    deadline = time.monotonic() + 2
    while instance_alive(pid) and time.monotonic() < deadline:  # (a zombie counts as gone)
        time.sleep(0.01)
    cleanup.remove_dead_shims(path, state, mountutil.mountpoints())


def _warn(bundle: str, args: SimpleNamespace, given: bootstrap.StartInput, note: str) -> None:
    """What containerd should know but `start`'s answer cannot carry: into its log."""
    for message in ([note] if note else []) + [
        f"BootstrapParams extension {url!r} is not known to this shim: ignored"
        for url in given.ignored
    ]:
        startlog.warn(bundle, message, args.namespace, args.id)


def _answer(bundle: str, mode: str, path: str, bootstrapped: bool) -> None:
    """Write `<bundle>/address` where containerd may read it, and print the start output.

    containerd 1.6/1.7 reconnect after a restart from `address` (ttrpc); 2.x reads its own
    bootstrap.json and falls back to `address` as a v2 ttrpc address, which a gRPC-only
    shim cannot answer: no `address` file then.
    """
    if mode != config.V3_GRPC:
        _write_address(bundle, "unix://" + path)
    sys.stdout.buffer.write(config.start_output(mode, path, bootstrap=bootstrapped))
    sys.stdout.flush()
