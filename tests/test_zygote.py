"""The fork server: request encoding, and that containerd's shims really come from it."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from harness import LXCFS_RUNTIME, process_cmdlines, wait_until

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


def _zygote_family() -> dict[str, list[int]]:
    """zygote socket path -> pids of the processes titled `-zygote <path>` (zygote, spare)."""
    family: dict[str, list[int]] = {}
    for pid, argv in process_cmdlines().items():
        if "-zygote" in argv and argv.index("-zygote") + 1 < len(argv):
            family.setdefault(argv[argv.index("-zygote") + 1], []).append(pid)
    return family


def _spare_of(path: str) -> int | None:
    """The spare: same title as its zygote, but not a session leader (it left via setsid in
    an intermediate process); the zygote itself leads the session `start` gave it."""
    for pid in _zygote_family().get(path, []):
        try:
            if os.getsid(pid) != pid:
                return pid
        except ProcessLookupError:
            pass
    return None


@pytest.mark.e2e
def test_a_warm_spare_becomes_the_next_shim(containerd, busybox_rootfs, cid):
    """The zygote keeps one spare forked ahead; a `start` is handed to it (same pid), the
    next spare follows, and stopping the zygote takes its spare along."""
    ids = [f"{cid}-warm"]
    try:
        r = containerd.run_detached(LXCFS_RUNTIME, busybox_rootfs, ids[0], "/bin/sleep", "1000")
        assert r.returncode == 0, r.stderr

        def spares() -> dict[int, str]:
            """spare pid -> its zygote's socket, for every live zygote (older code's too)."""
            out = {}
            for path in _zygote_family():
                spare = _spare_of(path)
                if spare and os.path.exists(path):
                    out[spare] = path
            return out

        path, handed = None, 0
        for attempt in range(6):
            if handed == 2:
                break
            c = f"{cid}-{attempt}"
            ids.append(c)
            waiting = wait_until(lambda z=path: {k: v for k, v in spares().items()
                                                 if z is None or v == z}, 10)
            assert waiting, f"no spare next to a zygote: {_zygote_family()}"
            r = containerd.run_detached(LXCFS_RUNTIME, busybox_rootfs, c, "/bin/sleep", "1000")
            assert r.returncode == 0, r.stderr
            (shim_pid, _), = containerd.shim_processes(c)
            r = containerd.ctr("task", "exec", "--exec-id", "e1", c, "/bin/head", "-1",
                               "/proc/meminfo", timeout=30)
            assert r.returncode == 0 and r.stdout.startswith("MemTotal:"), r.stderr
            if path is None and shim_pid not in waiting:
                continue  # this code's zygote was still warming up (start exec'd the shim)
            # the zygote of this code is the one whose waiting spare became the shim
            assert shim_pid in waiting, (shim_pid, waiting)
            path, handed = waiting[shim_pid], handed + 1
        assert handed == 2, f"the spare was not handed over twice: {_zygote_family()}"
        assert path is not None
        spare = wait_until(lambda: _spare_of(path), 10)
        assert spare
        zygote_pid = next(p for p in _zygote_family()[path] if p != spare)
        os.kill(zygote_pid, signal.SIGTERM)
        assert wait_until(lambda: not _zygote_family().get(path), 10), _zygote_family()
        assert not os.path.exists(path)
    finally:
        for c in ids:
            containerd.force_remove(c)
            assert not containerd.wait_no_leaks_for(c, timeout=10)
