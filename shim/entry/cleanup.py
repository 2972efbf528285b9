"""`delete`: clean up after a shim that is gone, and print a DeleteResponse.

containerd runs this after *every* task connection closes (also on the normal path), and waits
at most a few seconds, so it must be quick, idempotent, never block on a dead FUSE mount, and
always print a valid response. Stdlib only.
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

from shim import wire
from shim.identity import (
    RUNC_ROOT,
    SYSINFO_SOCKET,
    SocketLock,
    group_annotations,
    group_id,
    instance_alive,
    quietly,
    shim_alive,
    socket_path,
    state_dir,
)
from shim.task import mountutil

_SIGKILL_STATUS = 128 + 9


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _runc_options(bundle: str) -> dict:
    """options.json as the service wrote it: usually `{}` (defaults), read without json."""
    raw = _read(os.path.join(bundle, "options.json"))
    if raw in ("", "{}"):
        return {}
    import json

    try:
        options = json.loads(raw)
    except ValueError:
        return {}
    return options if isinstance(options, dict) else {}


def _bound_socket(bundle: str) -> str:
    """The socket `start` bound, from the `address` file it wrote (containerd 2.3+ may have
    named another directory than the default); "" when there is none."""
    address = _read(os.path.join(bundle, "address"))
    return address.removeprefix("unix://") if address.startswith("unix:///") else ""


def _log(message: str) -> None:
    # containerd logs delete's stderr as warnings
    print(f"{message}", file=sys.stderr)


def remove_dead_shims(sock: str, state: str, mounted: set[str]) -> None:
    """What dead serving processes of this group left: their FUSE views, socket, record.

    Each serving process mounts its view in its own directory `<state>/<pid>`; those of
    live processes (a shim still draining, or the next shim of a reused id) are left alone.
    """
    try:
        instances = [e for e in os.listdir(state) if e.isdigit()]
    except OSError:
        instances = []
    for pid in instances:
        if instance_alive(int(pid)):
            continue
        instance = os.path.join(state, pid)
        view = os.path.join(instance, "view")
        if view in mounted:
            mountutil.abort_fuse(view)
            try:
                mountutil.umount_all(view)
            except OSError as e:
                _log(str(e))
        quietly(os.unlink, os.path.join(instance, SYSINFO_SOCKET))  # a killed shim's listener
        for leftover in (view, instance):  # rmdir, never a recursive walk into a mount
            quietly(os.rmdir, leftover)
    with SocketLock():  # the socket and the record may be a live successor's: check first
        if not shim_alive(sock, 0.2):
            quietly(os.unlink, sock)
            quietly(os.unlink, os.path.join(state, "task-api"))  # shim/entry/config.py's record
        quietly(os.rmdir, state)


def delete(args: SimpleNamespace) -> int:
    bundle = args.bundle or os.getcwd()
    options = _runc_options(bundle)
    runc = options.get("binary_name") or "runc"
    root = os.path.join(options.get("root") or RUNC_ROOT, args.namespace)
    cmd = [runc, "--root", root, "--log", os.path.join(bundle, "log.json"), "--log-format", "json"]
    if options.get("systemd_cgroup"):
        cmd.append("--systemd-cgroup")
    # our Delete already removed the runc state on the normal path: runc only when it's there
    if args.id and os.path.isdir(os.path.join(root, args.id)):
        import subprocess

        try:
            done = subprocess.run(
                [*cmd, "delete", "--force", args.id], capture_output=True, timeout=3, check=False
            )
            if done.returncode and b"does not exist" not in done.stderr:
                detail = done.stderr.decode(errors="replace").strip()
                _log(f"runc delete --force {args.id}: {detail}")
        except (OSError, subprocess.TimeoutExpired) as e:
            _log(f"runc delete --force {args.id}: {e}")
    mounted = mountutil.mountpoints()
    rootfs = os.path.join(bundle, "rootfs")
    if rootfs in mounted:
        try:
            mountutil.umount_all(rootfs)
        except OSError as e:
            _log(str(e))

    if args.address and args.namespace and args.id:
        group = group_id(args.id, group_annotations(bundle))
        sock = _bound_socket(bundle) or socket_path(args.address, args.namespace, group)
        remove_dead_shims(sock, state_dir(args.address, args.namespace, group), mounted)

    pid = int(_read(os.path.join(bundle, "init.pid")) or 0)
    now = time.time_ns()
    sys.stdout.buffer.write(wire.delete_response(pid, _SIGKILL_STATUS, now // 10**9, now % 10**9))
    sys.stdout.flush()
    return 0
