"""Task API parity, end to end through containerd 1.6 (`ctr`) and real runc, for both runtimes.

Every test runs with `io.containerd.runc.v2` (containerd's stock shim: proves the test is fair)
and with `io.containerd.lxcfs.v2`. Where ctr 1.6 has no command for an RPC (Update) or hides
the status code (errors), the test talks ttrpc to the shim's socket itself, exactly as
containerd does: the socket is `/run/containerd/s/<sha256(address/ns/id)>` for both shims.

Facts of this machine the tests rely on: cgroup v1 (hybrid), no swap, criu 3.17 that cannot
initialise on this kernel (vDSO layout), so `runc checkpoint` fails for both runtimes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import anyio
import cgroup_paths
import pytest
from betterproto.lib.google.protobuf import Any as AnyMsg
from betterproto.lib.google.protobuf import Empty as _Empty
from harness import LXCFS_RUNTIME, SHIM_SOCKET_DIR, parse_meminfo, shim_hash, wait_until

from protos.gen.containerd.task import v2 as api
from shim.transport.errors import Code, RpcError
from shim.transport.ttrpc.client import TtrpcClient

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def _explain(r) -> str:
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


def _lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if not ln.startswith("time=")]


@pytest.fixture
def running(containerd, busybox_rootfs, runtime, cid):
    """A detached `sleep` task (RUNNING) of `runtime`; returns its id."""

    def start(*ctr_args: str, cmd: tuple[str, ...] = ("/bin/sleep", "1000")) -> str:
        r = containerd.run_detached(runtime, busybox_rootfs, cid, *cmd, ctr_args=ctr_args)
        assert r.returncode == 0, _explain(r)
        assert containerd.wait_status(cid, "RUNNING", timeout=20), containerd.tasks()
        return cid

    return start


def _stop(containerd, cid: str) -> int | None:
    containerd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=30)
    assert containerd.wait_status(cid, "STOPPED", timeout=20), containerd.tasks()
    status = containerd.delete_task(cid)
    containerd.ctr("container", "rm", cid, timeout=30)
    return status


# --------------------------------------------------------------------------- helpers


class Events:
    """`ctr events` in the background: the topics (and raw lines) seen while it ran."""

    def __init__(self, containerd):
        self._proc = subprocess.Popen(
            [containerd.ctr_bin, "--address", containerd.address, "events"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env=containerd.env,
        )
        time.sleep(0.5)  # subscribed
        self.lines: list[str] = []

    def stop(self) -> list[str]:
        time.sleep(0.5)
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=10)
        self.lines = out.splitlines()
        return self.lines

    def topics(self, cid: str) -> list[str]:
        out = []
        for line in self.lines:
            topic = next((w for w in line.split() if w.startswith("/tasks/")), None)
            if topic and cid in line:
                out.append(topic)
        return out


def ctr_tty(
    containerd, *args: str, input: bytes = b"", rows: int = 30, cols: int = 100, timeout: float = 60
) -> tuple[int, str]:
    """Run ctr with a pty (rows x cols) as its stdio, like a user at a terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    cmd = [
        containerd.ctr_bin,
        "--address",
        containerd.address,
        "--namespace",
        containerd.namespace,
        *args,
    ]
    proc = subprocess.Popen(
        cmd, stdin=slave, stdout=slave, stderr=slave, env=containerd.env, start_new_session=True
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        if input:
            time.sleep(1)
            os.write(master, input)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
        return proc.wait(10), out.decode(errors="replace")
    finally:
        os.close(master)


def shim_call(containerd, cid: str, method: str, request, response_type=None):
    """Call the task API of the shim serving `cid` (any runtime); returns reply or RpcError."""
    path = str(SHIM_SOCKET_DIR / shim_hash(containerd.address, containerd.namespace, cid))

    async def call():
        async with TtrpcClient.connect(path) as client:
            try:
                return await client.call(
                    containerd.task_service, method, request, response_type or _Empty, timeout=30
                )
            except RpcError as e:
                return e

    return anyio.run(call)


def _memory_cgroup(containerd, cid: str) -> Path:
    return cgroup_paths.ctr_cgroup(containerd.namespace, cid, "memory")


# --------------------------------------------------------------------------- exec


def test_exec_stdio_exit_code_and_events(containerd, runtime, running):
    cid = running()
    events = Events(containerd)
    r = containerd.ctr(
        "task",
        "exec",
        "--exec-id",
        "e1",
        cid,
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 3",
        timeout=30,
    )
    events.stop()
    assert r.returncode == 3, _explain(r)
    assert r.stdout == "out\n", _explain(r)
    assert _lines(r.stderr) == ["err"], _explain(r)
    topics = events.topics(cid)
    assert topics[:3] == ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"], events.lines
    # the exec is gone (ctr deleted it): the id can be reused
    r = containerd.ctr("task", "exec", "--exec-id", "e1", cid, "/bin/true", timeout=30)
    assert r.returncode == 0, _explain(r)
    assert _stop(containerd, cid) == 137


def test_exec_stdin_reaches_process_and_closeio_ends_it(containerd, runtime, running):
    """ctr exec copies stdin and calls CloseIO at EOF: `cat` sees EOF and exits."""
    cid = running()
    r = containerd.ctr(
        "task",
        "exec",
        "--exec-id",
        "cat",
        cid,
        "/bin/cat",
        input="line one\nline two\n",
        timeout=30,
    )
    assert r.returncode == 0, _explain(r)
    assert r.stdout == "line one\nline two\n", _explain(r)
    _stop(containerd, cid)


def test_exec_tty_and_resize(containerd, runtime, running):
    cid = running()
    code, out = ctr_tty(
        containerd,
        "task",
        "exec",
        "-t",
        "--exec-id",
        "t1",
        cid,
        "/bin/sh",
        "-c",
        "tty; sleep 1; stty size; exit 5",
        rows=33,
        cols=111,
    )
    assert code == 5, out
    assert "/dev/pts/" in out, out
    assert "33 111" in out, out
    _stop(containerd, cid)


def test_exec_duplicate_id_and_listing(containerd, runtime, running):
    cid = running()
    r = containerd.ctr(
        "task", "exec", "-d", "--exec-id", "dup", cid, "/bin/sleep", "1000", timeout=30
    )
    assert r.returncode == 0, _explain(r)
    r = containerd.ctr("task", "exec", "-d", "--exec-id", "dup", cid, "/bin/true", timeout=30)
    assert r.returncode != 0 and "already exists" in r.stderr, _explain(r)
    # Pids marks the exec's pid with its exec id (ProcessDetails)
    r = containerd.ctr("task", "ps", cid, timeout=30)
    assert r.returncode == 0 and "dup" in r.stdout, _explain(r)
    reply = shim_call(
        containerd, cid, "State", api.StateRequest(id=cid, exec_id="dup"), api.StateResponse
    )
    assert not isinstance(reply, RpcError), reply
    assert reply.status == 2 and reply.pid > 0  # RUNNING
    # the init's exit comes after its exec's exit
    events = Events(containerd)
    _stop(containerd, cid)
    events.stop()
    exits = [ln for ln in events.lines if "/tasks/exit" in ln and cid in ln]
    assert len(exits) == 2 and '"dup"' in exits[0], events.lines


def test_run_tty(containerd, busybox_rootfs, runtime, cid):
    code, out = ctr_tty(
        containerd,
        "run",
        "--rm",
        "-t",
        "--runtime",
        runtime,
        "--rootfs",
        str(busybox_rootfs),
        cid,
        "/bin/sh",
        "-c",
        "tty; sleep 1; stty size; exit 4",
        rows=25,
        cols=90,
    )
    assert code == 4, out
    assert "/dev/pts/0" in out and "25 90" in out, out


def test_run_tty_interactive_input(containerd, busybox_rootfs, runtime, cid):
    code, out = ctr_tty(
        containerd,
        "run",
        "--rm",
        "-t",
        "--runtime",
        runtime,
        "--rootfs",
        str(busybox_rootfs),
        cid,
        "/bin/sh",
        input=b"echo hel''lo; exit 6\n",
    )
    assert code == 6, out
    assert "hello" in out, out


# --------------------------------------------------------------------------- pause / resume


def test_pause_resume(containerd, runtime, running):
    cid = running()
    events = Events(containerd)
    assert containerd.ctr("task", "pause", cid, timeout=30).returncode == 0
    assert containerd.task_status(cid) == "PAUSED"
    r = containerd.ctr("task", "pause", cid, timeout=30)
    assert r.returncode != 0, _explain(r)  # already paused
    assert containerd.ctr("task", "resume", cid, timeout=30).returncode == 0
    assert containerd.task_status(cid) == "RUNNING"
    r = containerd.ctr("task", "resume", cid, timeout=30)
    assert r.returncode != 0, _explain(r)  # not paused
    events.stop()
    assert events.topics(cid) == ["/tasks/paused", "/tasks/resumed"], events.lines
    assert _stop(containerd, cid) == 137


# --------------------------------------------------------------------------- update / stats / OOM


def _update_memory(containerd, cid: str, limit: int):
    resources = {"memory": {"limit": limit}}
    req = api.UpdateTaskRequest(
        id=cid,
        resources=AnyMsg(
            type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
            value=json.dumps(resources).encode(),
        ),
    )
    return shim_call(containerd, cid, "Update", req)


def test_update_memory_limit(containerd, runtime, running):
    cid = running("--memory-limit", str(256 * MiB))
    reply = _update_memory(containerd, cid, 128 * MiB)
    assert not isinstance(reply, RpcError), reply
    assert cgroup_paths.memory_limit(_memory_cgroup(containerd, cid)) == 128 * MiB
    r = containerd.ctr(
        "task", "exec", "--exec-id", "mi", cid, "/bin/cat", "/proc/meminfo", timeout=30
    )
    assert r.returncode == 0, _explain(r)
    total = parse_meminfo(r.stdout)["MemTotal"]
    if runtime == LXCFS_RUNTIME:
        assert total == 128 * 1024, r.stdout  # the view re-reads the cgroup on every open
    else:
        assert total == parse_meminfo(Path("/proc/meminfo").read_text())["MemTotal"]
    _stop(containerd, cid)
    # a stopped container cannot be updated (task still known until deleted)


def test_metrics(containerd, runtime, running):
    cid = running("--memory-limit", str(64 * MiB))
    r = containerd.ctr("task", "metrics", "--format", "json", cid, timeout=30)
    assert r.returncode == 0, _explain(r)
    data = json.loads(r.stdout)
    if cgroup_paths.unified():  # io.containerd.cgroups.v2.Metrics
        assert data["memory"]["usage_limit"] == 64 * MiB, r.stdout
        assert data["memory"]["usage"] > 0, r.stdout
        assert data["cpu"]["usage_usec"] > 0, r.stdout
    else:  # io.containerd.cgroups.v1.Metrics
        assert data["memory"]["usage"]["limit"] == 64 * MiB, r.stdout
        assert data["memory"]["usage"]["usage"] > 0, r.stdout
        assert data["cpu"]["usage"]["total"] > 0, r.stdout
    assert data["pids"]["current"] >= 1, r.stdout
    r = containerd.ctr("task", "metrics", cid, timeout=30)
    # ctr's table names the v1 files, or the v2 Metrics fields
    word = "memory.usage" if cgroup_paths.unified() else "memory.usage_in_bytes"
    assert r.returncode == 0 and word in r.stdout, _explain(r)
    _stop(containerd, cid)


def test_oom_event(containerd, busybox_rootfs, runtime, cid):
    events = Events(containerd)
    # `tail` keeps the last 10 lines; /dev/zero has no newline, so its one line grows forever
    r = containerd.run(
        runtime,
        busybox_rootfs,
        cid,
        "/bin/tail",
        "/dev/zero",
        ctr_args=("--memory-limit", str(32 * MiB)),
        timeout=120,
    )
    events.stop()
    assert r.returncode == 137, _explain(r)
    assert "/tasks/oom" in events.topics(cid), events.lines


# --------------------------------------------------------------------------- stdio URIs


def test_file_log_uri(containerd, busybox_rootfs, runtime, cid, tmp_path):
    log = tmp_path / "sub" / "ctr.log"
    r = containerd.run(
        runtime,
        busybox_rootfs,
        cid,
        "/bin/sh",
        "-c",
        "echo to-out; echo to-err >&2",
        ctr_args=("--log-uri", f"file://{log}"),
    )
    assert r.returncode == 0, _explain(r)

    def lines() -> list[str]:
        with contextlib.suppress(OSError):
            return sorted(log.read_text().splitlines())
        return []

    if runtime == LXCFS_RUNTIME:  # runc writes both streams to the file itself: all there
        assert lines() == ["to-err", "to-out"]
    else:
        # containerd 1.6.20's runc.v2 copies each stream from its own goroutine; in about one
        # run of eight the file never gets the stderr line (checked 3 s later). Hold the
        # reference only to what it reliably does.
        assert wait_until(lambda: "to-out" in lines(), 15), lines()
        assert set(lines()) <= {"to-err", "to-out"}, lines()


LOGGER = """#!/bin/sh
# binary:// logger for the tests: records args/env, copies fd 3 and 4 to files
dir={dir}
echo "$@" > $dir/args
echo "$CONTAINER_ID $CONTAINER_NAMESPACE" > $dir/env
cat <&3 > $dir/out 5>&- &
cat <&4 > $dir/err 5>&- &
exec 5>&-  # ready
wait
"""


def test_binary_log_uri(containerd, busybox_rootfs, runtime, cid, tmp_path):
    logger = tmp_path / "logger.sh"
    logger.write_text(LOGGER.format(dir=tmp_path))
    logger.chmod(0o755)
    r = containerd.run(
        runtime,
        busybox_rootfs,
        cid,
        "/bin/sh",
        "-c",
        "echo to-out; echo to-err >&2",
        ctr_args=("--log-uri", f"binary://{logger}?level=debug&flag="),
    )
    assert r.returncode == 0, _explain(r)

    def logged(name: str) -> str:
        with contextlib.suppress(OSError):
            return (tmp_path / name).read_text()
        return ""

    assert wait_until(lambda: logged("out") == "to-out\n", 15), logged("out")
    assert wait_until(lambda: logged("err") == "to-err\n", 15), logged("err")
    # runc.v2 walks the query as a Go map: key order differs from run to run
    args = (tmp_path / "args").read_text().split()
    assert sorted(args) == ["debug", "flag", "level"], args
    assert args[args.index("level") + 1] == "debug", args
    assert (tmp_path / "env").read_text().split() == [cid, containerd.namespace]


# --------------------------------------------------------------------------- runtime options

RUNC_WRAPPER = """#!/bin/sh
echo "$@" >> {log}
exec runc "$@"
"""


def test_runc_options_binary_and_root(containerd, busybox_rootfs, runtime, cid, tmp_path):
    """runc.v2 gets Options from ctr's --runc-* flags; lxcfs the same settings via CRI's
    runtimeoptions (a TOML config path), which is how containerd configures non-runc shims."""
    wrapper = tmp_path / "my-runc"
    calls = tmp_path / "calls"
    wrapper.write_text(RUNC_WRAPPER.format(log=calls))
    wrapper.chmod(0o755)
    root = tmp_path / "runc-root"
    if runtime == LXCFS_RUNTIME:
        config = tmp_path / "runtime.toml"
        config.write_text(f'BinaryName = "{wrapper}"\nRoot = "{root}"\n')
        args = ("--runtime-config-path", str(config))
    else:
        args = ("--runc-binary", str(wrapper), "--runc-root", str(root))
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/sh", "-c", "exit 2", ctr_args=args)
    assert r.returncode == 2, _explain(r)
    text = calls.read_text()
    assert f"--root {root}/{containerd.namespace}" in text, text
    assert " create " in text and " delete " in text, text


@pytest.mark.parametrize("runtime", [LXCFS_RUNTIME], ids=["lxcfs"])
def test_runtime_config_shim_cgroup_and_keyring(containerd, busybox_rootfs, runtime, cid, tmp_path):
    """ShimCgroup / NoNewKeyring: ctr 1.6 has no flags for them, so only the TOML route
    (what CRI uses for a non-runc runtime) reaches a shim; runc.v2 cannot be driven so.
    On 2.3+ the options arrive inside BootstrapParams (field 8)."""
    wrapper = tmp_path / "my-runc"
    calls = tmp_path / "calls"
    wrapper.write_text(RUNC_WRAPPER.format(log=calls))
    wrapper.chmod(0o755)
    group = f"shimcg-{os.getpid()}"
    controllers = ("",) if cgroup_paths.unified() else ("memory", "pids")
    dirs = [Path("/sys/fs/cgroup", c, group) for c in controllers]
    for d in dirs:
        d.mkdir(exist_ok=True)
    config = tmp_path / "runtime.toml"
    config.write_text(f'BinaryName = "{wrapper}"\nShimCgroup = "/{group}"\nNoNewKeyring = true\n')
    try:
        r = containerd.run_detached(
            runtime,
            busybox_rootfs,
            cid,
            "/bin/sleep",
            "1000",
            ctr_args=("--runtime-config-path", str(config)),
        )
        assert r.returncode == 0, _explain(r)
        ((shim_pid, _),) = containerd.shim_processes(cid)
        own = Path(f"/proc/{shim_pid}/cgroup").read_text()
        assert cgroup_paths.in_cgroup(shim_pid, group, "memory"), own
        assert "--no-new-keyring" in calls.read_text()
        _stop(containerd, cid)
        assert not containerd.wait_no_leaks_for(cid, 10)
    finally:
        for d in dirs:
            wait_until(lambda d=d: not cgroup_paths.has_pids(d), 10)
            with contextlib.suppress(OSError):
                d.rmdir()


def test_io_uid_gid_own_the_containers_stdio(containerd, busybox_rootfs, runtime, cid, tmp_path):
    """IoUid/IoGid: runc.v2 chowns the pipes it gives the container; we chown containerd's
    FIFOs, which the container gets directly. runc then sets the owner to the process user
    (root here) and keeps the group, so both show 0:100000. ctr 1.6 reaches runc.v2's
    Options through --uidmap/--gidmap (it sets IoUid/IoGid from them; with --rootfs it creates
    no user namespace), ours through the runtime-options TOML."""
    if runtime != LXCFS_RUNTIME and containerd.version >= (1, 7, 0):
        pytest.skip(
            "ctr 1.7+ applies --uidmap (and so IoUid/IoGid) only to image snapshots, "
            "not --rootfs, and sends runc.v2 no runtime-options TOML: no ctr route"
        )
    if runtime == LXCFS_RUNTIME:
        config = tmp_path / "runtime.toml"
        config.write_text("IoUid = 100000\nIoGid = 100000\n")
        args: tuple[str, ...] = ("--runtime-config-path", str(config))
    else:
        args = ("--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536")
    r = containerd.run(
        runtime,
        busybox_rootfs,
        cid,
        "/bin/sh",
        "-c",
        "for f in 0 1 2; do stat -L -c %u:%g /proc/self/fd/$f; done",
        ctr_args=args,
    )
    assert r.returncode == 0, _explain(r)
    assert r.stdout.split() == ["0:100000"] * 3, _explain(r)


# --------------------------------------------------------------------------- grouping


def test_grouping_by_sandbox_annotation(containerd, busybox_rootfs, runtime, cid):
    other = containerd.new_id("grouped")
    ann = ("--annotation", f"io.kubernetes.cri.sandbox-id={cid}")
    try:
        for c in (cid, other):
            r = containerd.run_detached(
                runtime, busybox_rootfs, c, "/bin/sleep", "1000", ctr_args=ann
            )
            assert r.returncode == 0, _explain(r)
        shims = containerd.shim_processes()
        ours = [s for s in shims if cid in s[1] or other in s[1]]
        assert len(ours) == 1, shims  # one shim serves both containers of the "pod"
        # the first container going away leaves the shim serving the second
        assert _stop(containerd, cid) == 137
        assert containerd.task_status(other) == "RUNNING"
        r = containerd.ctr("task", "exec", "--exec-id", "x", other, "/bin/true", timeout=30)
        assert r.returncode == 0, _explain(r)
    finally:
        containerd.force_remove(other)
    assert not containerd.wait_no_leaks_for(cid, 10)


# --------------------------------------------------------------------------- restarts


def test_containerd_restart_keeps_tasks(containerd, runtime, running):
    cid = running()
    pid = containerd.tasks()[cid][0]
    containerd.stop()
    containerd.start()
    assert containerd.tasks().get(cid) == (pid, "RUNNING"), containerd.tasks()
    r = containerd.ctr(
        "task", "exec", "--exec-id", "after", cid, "/bin/sh", "-c", "exit 9", timeout=30
    )
    assert r.returncode == 9, _explain(r)
    assert _stop(containerd, cid) == 137


def test_shim_killed_then_cleaned_by_delete(containerd, runtime, running):
    cid = running()
    pid = containerd.tasks()[cid][0]
    shims = containerd.shim_processes(cid)
    assert len(shims) == 1, shims
    os.kill(shims[0][0], signal.SIGKILL)
    # containerd notices the closed connection, runs `<shim> delete` (the container dies)
    # and publishes exit + delete on the shim's behalf: the task is gone
    assert wait_until(lambda: cid not in containerd.tasks(), 30), containerd.tasks()
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 15), "init survived"
    containerd.ctr("task", "rm", cid, timeout=30)
    containerd.ctr("container", "rm", cid, timeout=30)
    sock = SHIM_SOCKET_DIR / shim_hash(containerd.address, containerd.namespace, cid)
    if runtime != LXCFS_RUNTIME:
        # containerd-shim-runc-v2's `delete` leaves the dead shim's socket behind (stock
        # behaviour, seen here); remove it so the suite's leak check stays about our shim
        wait_until(sock.exists, 5)
        sock.unlink(missing_ok=True)
    assert not containerd.wait_no_leaks_for(cid, 10)
    runc_state = Path("/run/containerd/runc", containerd.namespace, cid)
    assert not runc_state.exists()


# --------------------------------------------------------------------------- checkpoint


def test_checkpoint_as_runc_v2_on_this_machine(containerd, runtime, running, tmp_path):
    """criu 3.17 cannot initialise on this kernel (vDSO): runc checkpoint fails for both
    shims, with criu's error, and the task keeps running."""
    cid = running()
    probe = subprocess.run(["criu", "check"], capture_output=True, text=True, timeout=30)
    r = containerd.ctr("task", "checkpoint", "--image-path", str(tmp_path / "img"), cid, timeout=60)
    if probe.returncode == 0:
        assert r.returncode == 0, _explain(r)
    else:
        assert r.returncode != 0 and "criu failed" in r.stderr, _explain(r)
    assert containerd.task_status(cid) == "RUNNING"
    assert _stop(containerd, cid) == 137


# --------------------------------------------------------------------------- error codes


def test_error_codes(containerd, runtime, running):
    cid = running()

    def code(method, request, response_type=None):
        reply = shim_call(containerd, cid, method, request, response_type)
        return reply.code if isinstance(reply, RpcError) else Code.OK

    assert code("State", api.StateRequest(id="nope"), api.StateResponse) == Code.NOT_FOUND
    assert (
        code("State", api.StateRequest(id=cid, exec_id="nope"), api.StateResponse) == Code.NOT_FOUND
    )
    assert code("Kill", api.KillRequest(id=cid, exec_id="nope", signal=9)) == Code.NOT_FOUND
    assert code("Start", api.StartRequest(id=cid), api.StartResponse) == Code.UNKNOWN
    assert code("Delete", api.DeleteRequest(id=cid), api.DeleteResponse) == Code.UNKNOWN
    assert code("Resume", api.ResumeRequest(id=cid)) == Code.UNKNOWN
    spec = AnyMsg(
        type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
        value=json.dumps(
            {
                "args": ["/bin/sleep", "1000"],
                "cwd": "/",
                "env": ["PATH=/bin"],
                "user": {"uid": 0, "gid": 0},
            }
        ).encode(),
    )
    assert code("Exec", api.ExecProcessRequest(id=cid, exec_id="x", spec=spec)) == Code.OK
    assert (
        code("Exec", api.ExecProcessRequest(id=cid, exec_id="x", spec=spec)) == Code.ALREADY_EXISTS
    )
    reply = shim_call(
        containerd, cid, "State", api.StateRequest(id=cid, exec_id="x"), api.StateResponse
    )
    assert reply.status == 1  # CREATED
    assert code("Delete", api.DeleteRequest(id=cid, exec_id="x"), api.DeleteResponse) == Code.OK
    # after the init exited: exec start is a failed precondition, kill is not found
    assert code("Exec", api.ExecProcessRequest(id=cid, exec_id="late", spec=spec)) == Code.OK
    containerd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=30)
    assert containerd.wait_status(cid, "STOPPED", timeout=20)
    # containerd 1.6.20's runc.v2 lets runc refuse ("cannot exec in a stopped container",
    # Unknown); newer shims answer FailedPrecondition first. Either is an error, never a pid.
    late = shim_call(
        containerd, cid, "Start", api.StartRequest(id=cid, exec_id="late"), api.StartResponse
    )
    assert isinstance(late, RpcError), late
    assert late.code in (Code.UNKNOWN, Code.FAILED_PRECONDITION), late
    assert code("Kill", api.KillRequest(id=cid, signal=9)) == Code.NOT_FOUND
    assert (
        code("Update", api.UpdateTaskRequest(id=cid, resources=AnyMsg(type_url="x", value=b"{}")))
        == Code.UNKNOWN
    )
    assert code("Pause", api.PauseRequest(id=cid)) == Code.UNKNOWN
    with contextlib.suppress(Exception):
        shim_call(
            containerd, cid, "Delete", api.DeleteRequest(id=cid, exec_id="late"), api.DeleteResponse
        )
    assert containerd.delete_task(cid) == 137
    containerd.ctr("container", "rm", cid, timeout=30)
