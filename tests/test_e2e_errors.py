"""Bad input end to end: clear errors through ctr, nothing left behind, the shim keeps serving.

Failures that both runtimes must report (a missing rootfs, a command that does not exist) run for
runc and lxcfs alike; the socket-level ones talk to our shim directly.
"""

from __future__ import annotations

import socket
import tempfile

import anyio
import pytest
from betterproto.lib.google.protobuf import Empty
from harness import LXCFS_RUNTIME, shim_hash

from protos.gen.containerd.task import v2 as api
from shim.transport.errors import Code, RpcError
from shim.transport.ttrpc.client import TtrpcClient

pytestmark = pytest.mark.e2e


def _shim_socket(containerd, cid: str) -> str:
    return "/run/containerd/s/" + shim_hash(containerd.address, containerd.namespace, cid)


def test_missing_rootfs_fails_create_cleanly(containerd, runtime, cid):
    missing = tempfile.mktemp(prefix="no-such-rootfs-", dir="/tmp")
    r = containerd.run(runtime, missing, cid, "/bin/true", timeout=60)
    assert r.returncode != 0
    assert "OCI runtime create failed" in r.stderr, r.stderr
    assert "no such file or directory" in r.stderr, r.stderr
    assert containerd.task_status(cid) is None


def test_missing_command_fails_with_its_name(containerd, busybox_rootfs, runtime, cid):
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/no-such-command", timeout=60)
    assert r.returncode != 0
    assert "/bin/no-such-command" in r.stderr, r.stderr
    assert "OCI runtime" in r.stderr, r.stderr


def _garbage_closes_connection(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        # first header byte must be 0 (length < 16 MiB): this cannot be framed
        s.sendall(b"\xff" * 64)
        return s.recv(100)


def test_garbage_frame_closes_only_that_connection(containerd, busybox_rootfs, cid):
    r = containerd.run_detached(LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    assert containerd.wait_status(cid, "RUNNING")
    assert _garbage_closes_connection(_shim_socket(containerd, cid)) == b""
    # containerd's own connection to the shim is unaffected
    assert containerd.task_status(cid) == "RUNNING"
    pids = containerd.ctr("task", "ps", cid, timeout=20)
    assert pids.returncode == 0 and str(containerd.tasks()[cid][0]) in pids.stdout, pids.stderr
    assert containerd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=20).returncode == 0
    assert containerd.wait_status(cid, "STOPPED")
    assert containerd.delete_task(cid) == 137
    assert containerd.ctr("container", "rm", cid, timeout=20).returncode == 0


def test_rpc_errors_carry_status_codes(containerd, busybox_rootfs, cid):
    r = containerd.run_detached(LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    assert containerd.wait_status(cid, "RUNNING")
    path = _shim_socket(containerd, cid)

    async def calls() -> dict[str, RpcError | object]:
        out: dict[str, RpcError | object] = {}
        async with TtrpcClient.connect(path) as c:
            for name, args in {
                "unknown service": ("containerd.task.v9.Task", "State", api.StateRequest(id=cid)),
                "unknown method": ("containerd.task.v2.Task", "Frobnicate", Empty()),
                "unknown container": (
                    "containerd.task.v2.Task",
                    "State",
                    api.StateRequest(id="nope"),
                ),
                "unknown exec": (
                    "containerd.task.v2.Task",
                    "State",
                    api.StateRequest(id=cid, exec_id="nope"),
                ),
                "delete running": ("containerd.task.v2.Task", "Delete", api.DeleteRequest(id=cid)),
                "start twice": ("containerd.task.v2.Task", "Start", api.StartRequest(id=cid)),
            }.items():
                try:
                    out[name] = await c.call(*args, api.StateResponse, timeout=10)
                except RpcError as e:
                    out[name] = e
            out["state"] = await c.call(
                "containerd.task.v3.Task",
                "State",
                api.StateRequest(id=cid),
                api.StateResponse,
                timeout=10,
            )
        return out

    out = anyio.run(calls)
    expect = {
        "unknown service": (Code.UNIMPLEMENTED, "service containerd.task.v9.Task"),
        "unknown method": (Code.UNIMPLEMENTED, "method Frobnicate"),
        "unknown container": (Code.NOT_FOUND, "container not created: not found"),
        "unknown exec": (Code.NOT_FOUND, "process does not exist nope: not found"),
        "delete running": (Code.UNKNOWN, "cannot delete a running process: unknown"),
        "start twice": (Code.UNKNOWN, "cannot start a running process: unknown"),
    }
    for name, (code, message) in expect.items():
        err = out[name]
        assert isinstance(err, RpcError), (name, err)
        assert (err.code, err.message) == (code, message), name
    state = out["state"]
    assert isinstance(state, api.StateResponse)
    assert state.id == cid and state.pid == containerd.tasks()[cid][0]
    assert containerd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=20).returncode == 0
    assert containerd.wait_status(cid, "STOPPED")
    assert containerd.delete_task(cid) == 137
    assert containerd.ctr("container", "rm", cid, timeout=20).returncode == 0
