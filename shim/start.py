"""`start`: find or launch the serving process for a container and print its address.

containerd reads stdout and stderr *together* and waits for both to close, so this prints
nothing but the address and the daemon gets /dev/null for its stdio (it logs to the bundle's
`log` fifo). Stdlib only: this runs once per container on the create path.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import subprocess
import sys

from shim.identity import group_id, socket_path

#: containerd's own start timeout is long; a live shim answers a connect at once.
_PROBE_TIMEOUT = 0.1


def _annotations(bundle: str) -> dict[str, str]:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return {}
    annotations = spec.get("annotations") or {}
    return annotations if isinstance(annotations, dict) else {}


def _alive(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _bind(path: str) -> socket.socket | None:
    """Bind the shim socket; None when a live shim already owns it."""
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    for _ in range(2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE:
                raise
            if _alive(path):
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


def _copy_oom_score(child: int) -> None:
    """Like the Go shim: one point more likely to be OOM-killed than containerd."""
    try:
        with open(f"/proc/{os.getppid()}/oom_score_adj") as f:
            score = min(int(f.read().strip()) + 1, 1000)
        with open(f"/proc/{child}/oom_score_adj", "w") as f:
            f.write(str(score))
    except (OSError, ValueError):
        pass


def start(args: argparse.Namespace) -> int:
    if not (args.namespace and args.id and args.address):
        print("start needs -namespace, -id and -address", file=sys.stderr)
        return 2
    bundle = os.getcwd()
    if not sys.stdin.isatty():
        sys.stdin.buffer.read()  # runtime options; the daemon reads them again from Create
    group = group_id(args.id, _annotations(bundle))
    path = socket_path(args.address, args.namespace, group)
    address = "unix://" + path
    sock = _bind(path)
    if sock is None:
        _write_address(bundle, address)
        print(address)
        return 0
    try:
        if sock.fileno() != 3:
            os.dup2(sock.fileno(), 3)
        cmd = [*_self_command(), "-namespace", args.namespace, "-id", args.id,
               "-address", args.address, "-group", group]
        if args.publish_binary:
            cmd += ["-publish-binary", args.publish_binary]
        if args.debug:
            cmd.append("-debug")
        child = subprocess.Popen(
            cmd,
            cwd=bundle,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3,),
            start_new_session=True,
        )
    except BaseException:
        os.unlink(path)
        raise
    finally:
        sock.close()
    child.returncode = 0  # never waited for: the daemon outlives us (stops Popen's reaping)
    _copy_oom_score(child.pid)
    _write_address(bundle, address)
    print(address)
    return 0
