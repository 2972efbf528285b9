"""End to end through containerd's `ctr`, run for both runtimes (ids `runc` and `lxcfs`).

`io.containerd.runc.v2` is containerd's stock shim: every test here must pass with it, which
proves the test itself is fair. The same test with `io.containerd.lxcfs.v2` then checks that our
shim behaves like the stock one (exit codes, stdio, signals, cleanup) and, in the tests marked
`lxcfs_view`, that it additionally shows the container's own limits in /proc/meminfo.

Facts about Debian's containerd 1.6.20 / ctr these tests rely on:
* `ctr run` (no -t) copies its stdin into the container but never closes the container's stdin
  on EOF, so `cat` with piped input would hang: the stdin test reads a known number of lines.
* `ctr run` forwards SIGTERM/SIGINT to the container, where a PID 1 without handlers ignores
  them: every ctr call has a timeout after which it is SIGKILLed.
* ctr 1.6 has no `task wait`; `ctr task rm` exits 0 and logs the task's non-zero exit status.
"""

from __future__ import annotations

import pytest
from harness import LXCFS_RUNTIME, host_meminfo, parse_meminfo

pytestmark = pytest.mark.e2e

LIMIT = 268435456  # 256 MiB
LIMIT_KB = LIMIT // 1024


def _explain(r) -> str:
    return f"exit {r.returncode}\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"


def _container_lines(stderr: str) -> list[str]:
    """stderr minus ctr's own logrus lines (`time="..." level=...`)."""
    return [ln for ln in stderr.splitlines() if not ln.startswith("time=")]


# --------------------------------------------------------------------------- stock behaviour


def test_exit_code_propagates(containerd, busybox_rootfs, runtime, cid):
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/sh", "-c", "exit 7", timeout=60)
    assert r.returncode == 7, _explain(r)


def test_true_exits_zero(containerd, busybox_rootfs, runtime, cid):
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/true", timeout=60)
    assert r.returncode == 0, _explain(r)
    assert r.stdout == "", _explain(r)


def test_stdout_and_stderr_are_separate(containerd, busybox_rootfs, runtime, cid):
    script = "echo to-stdout; echo to-stderr >&2; echo more-stdout; exit 3"
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/sh", "-c", script, timeout=60)
    assert r.returncode == 3, _explain(r)
    assert r.stdout == "to-stdout\nmore-stdout\n", _explain(r)
    assert _container_lines(r.stderr) == ["to-stderr"], _explain(r)


def test_large_stdout_is_complete(containerd, busybox_rootfs, runtime, cid):
    # ~1.2 MB through the stdout fifo: nothing lost or truncated at exit
    pad = "0123456789" * 5
    script = f"i=0; while [ $i -lt 20000 ]; do echo line-$i-{pad}; i=$((i+1)); done"
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/sh", "-c", script, timeout=120)
    assert r.returncode == 0, _explain(r)
    lines = r.stdout.splitlines()
    assert len(lines) == 20000, f"got {len(lines)} lines; tail: {lines[-3:]}"
    assert lines[0].startswith("line-0-") and lines[-1].startswith("line-19999-")


def test_stdin_is_piped_in(containerd, busybox_rootfs, runtime, cid):
    data = "first line\nsecond line\nthird line\n"
    # `head -n 3` is `cat` for exactly the lines we send (ctr 1.6 does not close stdin on EOF)
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/head", "-n", "3", input=data, timeout=60)
    assert r.returncode == 0, _explain(r)
    assert r.stdout == data, _explain(r)


def test_kill_sigkill_detached_task(containerd, busybox_rootfs, runtime, cid):
    r = containerd.run_detached(runtime, busybox_rootfs, cid, "/bin/sleep", "1000")
    assert r.returncode == 0, _explain(r)
    assert containerd.wait_status(cid, "RUNNING", timeout=20), containerd.tasks()

    # `sleep` is the container's PID 1 without a SIGTERM handler: the kernel drops SIGTERM
    r = containerd.ctr("task", "kill", cid, timeout=30)
    assert r.returncode == 0, _explain(r)
    assert not containerd.wait_status(cid, "STOPPED", timeout=1.5), "PID 1 died of SIGTERM?"

    r = containerd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=30)
    assert r.returncode == 0, _explain(r)
    assert containerd.wait_status(cid, "STOPPED", timeout=20), containerd.tasks()
    assert containerd.delete_task(cid) == 137
    r = containerd.ctr("container", "rm", cid, timeout=30)
    assert r.returncode == 0, _explain(r)
    assert cid not in containerd.containers()


def test_kill_sigterm_handled_by_init(containerd, busybox_rootfs, runtime, cid):
    script = "trap 'exit 143' TERM; sleep 1000 & wait"
    r = containerd.run_detached(runtime, busybox_rootfs, cid, "/bin/sh", "-c", script)
    assert r.returncode == 0, _explain(r)
    assert containerd.wait_status(cid, "RUNNING", timeout=20), containerd.tasks()
    r = containerd.ctr("task", "kill", cid, timeout=30)  # default signal: SIGTERM
    assert r.returncode == 0, _explain(r)
    assert containerd.wait_status(cid, "STOPPED", timeout=20), containerd.tasks()
    assert containerd.delete_task(cid) == 143
    r = containerd.ctr("container", "rm", cid, timeout=30)
    assert r.returncode == 0, _explain(r)


def test_run_rm_leaves_no_container(containerd, busybox_rootfs, runtime, cid):
    r = containerd.run(runtime, busybox_rootfs, cid, "/bin/true", timeout=60)
    assert r.returncode == 0, _explain(r)
    assert cid not in containerd.tasks()
    assert cid not in containerd.containers()
    # shim process, socket and mounts: checked (with a grace period) by the `cid` fixture


# --------------------------------------------------------------------------- the /proc view


def _meminfo_of(containerd, rootfs, runtime, cid, *ctr_args):
    r = containerd.run(
        runtime, rootfs, cid, "/bin/cat", "/proc/meminfo", ctr_args=ctr_args, timeout=60
    )
    assert r.returncode == 0, _explain(r)
    info = parse_meminfo(r.stdout)
    assert "MemTotal" in info, _explain(r)
    return r.stdout, info


@pytest.mark.lxcfs_view
def test_meminfo_shows_memory_limit(containerd, busybox_rootfs, runtime, cid):
    """lxcfs: MemTotal = the 256 MiB limit. runc (control): the host's MemTotal leaks through."""
    text, info = _meminfo_of(
        containerd, busybox_rootfs, runtime, cid, "--memory-limit", str(LIMIT), "--cpus", "1"
    )
    host = host_meminfo()
    if runtime == LXCFS_RUNTIME:
        assert f"MemTotal:         {LIMIT_KB} kB" in text.splitlines(), text
        assert info["MemFree"] <= info["MemTotal"], text
        assert info["MemAvailable"] <= info["MemTotal"], text
    else:
        assert host["MemTotal"] != LIMIT_KB, "host has exactly 256 MiB: test cannot tell"
        assert info["MemTotal"] == host["MemTotal"], text


@pytest.mark.lxcfs_view
def test_meminfo_without_limit_is_host(containerd, busybox_rootfs, runtime, cid):
    text, info = _meminfo_of(containerd, busybox_rootfs, runtime, cid)
    assert info["MemTotal"] == host_meminfo()["MemTotal"], text
    assert info["MemFree"] <= info["MemTotal"], text


@pytest.mark.lxcfs_view
def test_first_read_at_exec_shows_the_limit(containerd, busybox_rootfs, cid):
    """The container's very first instruction reads the view (no shell in between).

    runc's `init` stats the bind sources before runc applies the cgroup limits, and that same
    pid then execs the command: a rendering made for the stat must not be served to it.
    """
    for attempt in range(8):
        name = f"{cid}-{attempt}"
        r = containerd.run(
            LXCFS_RUNTIME,
            busybox_rootfs,
            name,
            "/bin/head",
            "-1",
            "/proc/meminfo",
            ctr_args=("--memory-limit", str(LIMIT)),
            timeout=60,
        )
        assert r.returncode == 0, _explain(r)
        assert r.stdout.split() == ["MemTotal:", str(LIMIT_KB), "kB"], (attempt, _explain(r))
        assert not containerd.wait_no_leaks_for(name, timeout=10)
