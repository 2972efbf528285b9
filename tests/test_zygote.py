"""The fork server: request encoding, and that containerd's shims really come from it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
from harness import (
    LXCFS_RUNTIME,
    PrivateContainerd,
    mount_points,
    process_cmdlines,
    shim_hash,
    wait_until,
)

from shim.entry import start, zygote


def test_request_round_trip(monkeypatch) -> None:
    monkeypatch.setattr(os, "environ", {"TTRPC_ADDRESS": "/run/c.sock.ttrpc", "A": "x=y"})
    argv = ["-namespace", "k8s.io", "-id", "abc", "-debug"]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    with a, b:
        a.sendmsg(
            [start._zygote_request(argv, "/run/bundle")],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, "little"))],
        )
        request, fd = zygote._recv_request(b)
    try:
        assert request == {
            "argv": argv,
            "cwd": "/run/bundle",
            "env": {"TTRPC_ADDRESS": "/run/c.sock.ttrpc", "A": "x=y"},
        }
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
    one gets a forked shim, which shows its own flags as its title (setproctitle)."""
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
            if raw.startswith(b"containerd-shim-lxcfs-v2 -namespace "):  # setproctitle's
                assert b"xxxx" not in raw and b" -zygote " not in raw, raw
                forked = True
                break
            time.sleep(1)  # the zygote is still importing
        assert forked, "no shim was forked from the zygote"
        assert wait_until(
            lambda: any(
                Path(p).name.startswith("zygote-") for p in os.listdir("/run/containerd-shim-lxcfs")
            ),
            5,
        )
        # a forked shim works like any other: exec sees the view, kill and delete work
        r = containerd.ctr(
            "task",
            "exec",
            "--exec-id",
            "e1",
            ids[-1],
            "/bin/head",
            "-1",
            "/proc/meminfo",
            timeout=30,
        )
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
            waiting = wait_until(
                lambda z=path: {k: v for k, v in spares().items() if z is None or v == z}, 10
            )
            assert waiting, f"no spare next to a zygote: {_zygote_family()}"
            r = containerd.run_detached(LXCFS_RUNTIME, busybox_rootfs, c, "/bin/sleep", "1000")
            assert r.returncode == 0, r.stderr
            ((shim_pid, _),) = containerd.shim_processes(c)
            r = containerd.ctr(
                "task", "exec", "--exec-id", "e1", c, "/bin/head", "-1", "/proc/meminfo", timeout=30
            )
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


# --------------------------------------------------------------------------- hygiene


def _memory_cgroup(pid: int | str = "self") -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") or (
            controllers == "" and not Path("/sys/fs/cgroup/memory").is_dir()
        ):
            return path
    raise AssertionError("no memory cgroup")


def _memory_root() -> Path:
    v1 = Path("/sys/fs/cgroup/memory")
    return v1 if v1.is_dir() else Path("/sys/fs/cgroup")


@contextlib.contextmanager
def _containerd_in_new_cgroup(
    name: str, env: dict[str, str] | None = None, wrapper: str | None = None
):
    """A private containerd moved into a memory cgroup of its own before any shim starts:
    a context no zygote has served yet (identity.process_context)."""
    group = _memory_root() / _memory_cgroup().lstrip("/") / f"churn-{name}-{os.getpid()}"
    group.mkdir()
    c = PrivateContainerd(**({"containerd": wrapper} if wrapper else {}))
    c.env.update(env or {})
    try:
        c.start()
        (group / "cgroup.procs").write_text(str(c.proc.pid))
        yield c, group
    finally:
        try:
            c.cleanup_all()
        finally:
            c.stop()
            # its zygote and spare live in the group: stop them (we launched them)
            for pid in _zygotes_in(group):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not _zygotes_in(group), 10)
            c.remove_tmpdir()
            wait_until(lambda: not (group / "cgroup.procs").read_text().split(), 10)
            group.rmdir()


def _zygotes_in(group: Path) -> list[int]:
    try:
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []
    return [p for p in pids if "-zygote" in process_cmdlines().get(p, [])]


def _zygote_socket_of(pid: int) -> str:
    argv = process_cmdlines()[pid]
    return argv[argv.index("-zygote") + 1]


def _run_until_forked(c: PrivateContainerd, rootfs: Path, hint: str) -> tuple[str, int]:
    """Containers until one gets a forked shim (the first one launches the zygote)."""
    for attempt in range(8):
        cid = c.new_id(f"{hint}{attempt}")
        r = c.run_detached(LXCFS_RUNTIME, rootfs, cid, "/bin/sleep", "1000")
        assert r.returncode == 0, r.stderr
        ((pid, _),) = c.shim_processes(cid)
        if _cmdline(pid).startswith(b"containerd-shim-lxcfs-v2 -namespace "):
            return cid, pid
        c.force_remove(cid)
        time.sleep(1)  # the zygote is still importing
    raise AssertionError("no shim was forked from the zygote")


@pytest.mark.e2e
def test_a_zygote_per_cgroup_and_its_idle_exit(busybox_rootfs):
    """A containerd in a cgroup of its own gets a zygote in that cgroup, so its forked shims
    are charged where an exec'd shim would be; the zygote exits when idle (with its spare)
    and removes its socket."""
    idle = 3
    with _containerd_in_new_cgroup("idle", {"CONTAINERD_SHIM_LXCFS_ZYGOTE_IDLE": str(idle)}) as (
        c,
        group,
    ):
        cid, shim = _run_until_forked(c, busybox_rootfs, "cg")
        assert _memory_cgroup(shim) == _memory_cgroup(c.proc.pid) != _memory_cgroup()
        zygotes = wait_until(lambda: _zygotes_in(group), 10)
        assert zygotes, "the zygote is not in containerd's cgroup"
        sockets = {_zygote_socket_of(p) for p in zygotes}
        assert len(sockets) == 1 and all(os.path.exists(s) for s in sockets), sockets
        r = c.ctr(
            "task", "exec", "--exec-id", "e1", cid, "/bin/head", "-1", "/proc/meminfo", timeout=30
        )
        assert r.returncode == 0 and r.stdout.startswith("MemTotal:"), r.stderr
        c.force_remove(cid)
        assert not c.wait_no_leaks_for(cid)
        # nothing asks for IDLE seconds: zygote and spare exit, the socket goes with them;
        # connects without a request (`start` probing sockets for dead zygotes) don't count

        def probed_and_gone() -> bool:
            for path in sockets:
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(path)
            return not _zygotes_in(group)

        assert wait_until(probed_and_gone, idle + 15, 0.3), _zygotes_in(group)
        assert not any(os.path.exists(s) for s in sockets)


@pytest.mark.e2e
def test_a_killed_zygotes_socket_is_removed(busybox_rootfs):
    with _containerd_in_new_cgroup("kill") as (c, group):
        cid, _ = _run_until_forked(c, busybox_rootfs, "k")
        c.force_remove(cid)
        zygote = next(p for p in _zygotes_in(group) if os.getsid(p) == p)
        path = _zygote_socket_of(zygote)
        os.kill(zygote, signal.SIGKILL)
        assert wait_until(lambda: not os.path.exists(f"/proc/{zygote}"), 10)
        assert os.path.exists(path)  # SIGKILL: nobody removed it
        cid = c.new_id("after")
        r = c.run(LXCFS_RUNTIME, busybox_rootfs, cid, "/bin/true")
        assert r.returncode == 0, r.stderr
        # the next start found it dead: removed it and launched a new zygote on the path
        assert wait_until(
            lambda: [
                p for p in _zygotes_in(group) if os.getsid(p) == p and _zygote_socket_of(p) == path
            ],
            10,
        )
        assert not c.wait_no_leaks_for(cid)


@pytest.mark.e2e
def test_a_containerd_in_a_private_mount_namespace(busybox_rootfs, tmp_path):
    """Its shims live in its mount namespace (views and all), forked or not: nothing of
    theirs is mounted in ours, and killing them leaves no dead view here."""
    wrapper = tmp_path / "containerd"
    wrapper.write_text(
        f'#!/bin/sh\nexec unshare -m --propagation private {shutil.which("containerd")} "$@"\n'
    )
    wrapper.chmod(0o755)
    with _containerd_in_new_cgroup("mntns", wrapper=str(wrapper)) as (c, group):
        ns = os.readlink(f"/proc/{c.proc.pid}/ns/mnt")
        assert ns != os.readlink("/proc/self/ns/mnt")
        cid, shim = _run_until_forked(c, busybox_rootfs, "ns")
        assert os.readlink(f"/proc/{shim}/ns/mnt") == ns
        assert all(os.readlink(f"/proc/{p}/ns/mnt") == ns for p in _zygotes_in(group))
        h = shim_hash(c.address, c.namespace, cid)
        assert not [m for m in mount_points() if h in m]
        theirs = Path(f"/proc/{c.proc.pid}/mountinfo")
        assert h in theirs.read_text()  # the view is in containerd's namespace
        os.kill(shim, signal.SIGKILL)
        c.force_remove(cid)
        assert not [m for m in mount_points() if h in m]
        assert not c.wait_no_leaks_for(cid)
        assert wait_until(lambda: h not in theirs.read_text(), 10), "dead view left there"
