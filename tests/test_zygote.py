"""The fork server: request encoding, and that containerd's shims really come from it."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from harness import LXCFS_RUNTIME, wait_until

from shim import start, zygote


def test_request_round_trip(monkeypatch) -> None:
    monkeypatch.setattr(os, "environ", {"TTRPC_ADDRESS": "/run/c.sock.ttrpc", "A": "x=y"})
    argv = ["-namespace", "k8s.io", "-id", "abc", "-debug"]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    with a, b:
        a.sendmsg([start._zygote_request(argv, "/run/bundle")],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, "little"))])
        request, fd = zygote._recv_request(b)
    try:
        assert request == {"argv": argv, "cwd": "/run/bundle",
                           "env": {"TTRPC_ADDRESS": "/run/c.sock.ttrpc", "A": "x=y"}}
        assert os.path.sameopenfile(fd, r)
    finally:
        for f in (fd, r, w):
            os.close(f)


def test_request_without_a_socket_is_refused() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        a.sendall(start._zygote_request(["-id", "x"], "/"))
        with pytest.raises(ValueError, match="exactly one"):
            zygote._recv_request(b)


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.e2e
def test_shims_are_forked_from_the_zygote(containerd, busybox_rootfs, cid):
    """The first `start` of this code finds no zygote (exec'd shim) and launches one; a later
    one gets a forked shim, which shows its own flags in the zygote's padded argument area."""
    ids: list[str] = []
    try:
        forked = False
        for attempt in range(6):
            c = f"{cid}-{attempt}"
            ids.append(c)
            r = containerd.run_detached(LXCFS_RUNTIME, busybox_rootfs, c, "/bin/sleep", "1000")
            assert r.returncode == 0, r.stderr
            procs = containerd.shim_processes(c)
            assert len(procs) == 1, procs
            raw = _cmdline(procs[0][0])
            if raw.startswith(b"containerd-shim-lxcfs-v2\0") and raw.endswith(b"\0\0"):
                forked = True
                break
            time.sleep(1)  # the zygote is still importing
        assert forked, "no shim was forked from the zygote"
        assert wait_until(lambda: any(Path(p).name.startswith("zygote-")
                                      for p in os.listdir("/run/containerd-shim-lxcfs")), 5)
        # a forked shim works like any other: exec sees the view, kill and delete work
        r = containerd.ctr("task", "exec", "--exec-id", "e1", ids[-1], "/bin/head", "-1",
                           "/proc/meminfo", timeout=30)
        assert r.returncode == 0 and r.stdout.startswith("MemTotal:"), r.stderr
    finally:
        for c in ids:
            containerd.force_remove(c)
            assert not containerd.wait_no_leaks_for(c, timeout=10)
