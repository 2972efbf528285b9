"""The FUSE view, for real: mount with pyfuse3 in the test's event loop, read from subprocesses
and worker threads (never synchronously from the loop that serves the requests)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from procfs.cgroups import Hierarchies
from procfs.renderers.meminfo import parse_meminfo
from procfs.view import View
from shim.task.mountutil import fuse_connection

MEMCG = Path("/sys/fs/cgroup/memory")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (FUSE allow_other, cgroups)"),
    pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def memcg(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real v1 memory cgroup limited to 256 MiB; yields its path below the hierarchy root."""
    if not (MEMCG / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory hierarchy")
    name = f"procfs-test-{request.node.name}-{os.getpid()}"
    d = MEMCG / name
    d.mkdir()
    try:
        (d / "memory.limit_in_bytes").write_text("256M")
        yield f"/{name}"
    finally:
        d.rmdir()


def mounted(path: Path) -> bool:
    return any(
        line.split()[4] == str(path)
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


@pytest.fixture(scope="module")
def fusectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The FUSE control fs (/sys/fs/fuse/connections); mounted privately if the host has not."""
    system = Path("/sys/fs/fuse/connections")
    if any(
        line.split()[4] == str(system)
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ):
        yield system
        return
    path = tmp_path_factory.mktemp("fusectl")
    subprocess.run(["mount", "-t", "fusectl", "fusectl", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fuse_connections(fusectl: Path) -> set[str]:
    return set(os.listdir(fusectl))


@pytest.fixture
async def view(tmp_path: Path, fusectl: Path) -> AsyncIterator[View]:
    """A running View; on exit checks that nothing stays mounted or connected."""
    before = fuse_connections(fusectl)
    v = View(tmp_path / "mnt")
    async with anyio.create_task_group() as tg:
        await tg.start(v.run)
        assert mounted(v.mountpoint)
        conn = str((await anyio.to_thread.run_sync(os.stat, v.mountpoint)).st_dev)
        assert conn in fuse_connections(fusectl) - before
        yield v
        tg.cancel_scope.cancel()
    assert not mounted(v.mountpoint)
    assert not v.mountpoint.exists()
    # our connection is gone (others' shims on this host come and go concurrently)
    assert conn not in fuse_connections(fusectl)


async def cat(path: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(["cat", path], check=False)


async def test_meminfo_limit_and_readers(view: View, memcg: str) -> None:
    files = view.add("c1", memcg)
    target = files["/proc/meminfo"]
    assert files == {"/proc/meminfo": str(view.mountpoint / "c1/proc/meminfo")}

    out = (await cat(target)).stdout
    assert parse_meminfo(out)["MemTotal"] == 256 * 1024
    assert out.startswith(b"MemTotal:         262144 kB\n")

    # Same content for every kind of reader (st_size matters for sendfile / tail users).
    py = await anyio.to_thread.run_sync(Path(target).read_bytes)
    busybox = await anyio.run_process(["busybox", "cat", target], check=False)
    dd = await anyio.run_process(["dd", f"if={target}", "bs=7", "status=none"])
    tail = await anyio.run_process(["tail", "-n", "1", target])
    for other in (py, busybox.stdout if busybox.returncode == 0 else out, dd.stdout):
        assert parse_meminfo(other)["MemTotal"] == 256 * 1024
        assert len(other) == len(out)
    assert tail.stdout == out.splitlines(keepends=True)[-1]
    st = await anyio.to_thread.run_sync(os.stat, target)
    assert st.st_size == len(out) and oct(st.st_mode) == oct(0o100444)


async def test_partial_reads_see_one_snapshot(view: View, memcg: str) -> None:
    target = view.add("c1", memcg)["/proc/meminfo"]

    def read_in_chunks() -> list[bytes]:
        with open(target, "rb", buffering=0) as f:
            return list(iter(lambda: f.read(7), b""))

    chunks = await anyio.to_thread.run_sync(read_in_chunks)
    assert all(len(c) == 7 for c in chunks[:-1])
    content = b"".join(chunks)
    assert parse_meminfo(content)["MemTotal"] == 256 * 1024
    assert content.endswith(b" kB\n")


async def test_growing_rendering_is_never_cut(view: View, memcg: str, monkeypatch) -> None:
    """The kernel's sendfile reads a FUSE file through its page cache up to the size it
    holds: a rendering longer than the last stat's must still come out whole, for sendfile,
    read(2) and coreutils tail (which seeks from st_size)."""
    import procfs.view as view_mod

    target = view.add("grow", memcg)["/proc/meminfo"]
    renders = [0]

    def producer(container, caller):
        renders[0] += 1
        return b"line\n" * 3 + b"x" * renders[0] + b"\n"

    monkeypatch.setitem(view_mod.PRODUCERS, "/proc/meminfo", producer)

    def by_sendfile() -> bytes:
        fd = os.open(target, os.O_RDONLY)
        r, w = os.pipe()
        out = b""
        try:
            while os.sendfile(w, fd, None, 65536) > 0:
                out += os.read(r, 65536)
        finally:
            for x in (fd, r, w):
                os.close(x)
        return out

    def whole(out: bytes) -> bool:
        return out.startswith(b"line\n" * 3) and out.endswith(b"\n") and b"\0" not in out

    for _ in range(30):
        await anyio.to_thread.run_sync(os.stat, target)  # the size of this rendering...
        await anyio.sleep(view_mod.SHARE_WINDOW * 1.5)  # ...and the next one is longer
        out = await anyio.to_thread.run_sync(by_sendfile)
        assert whole(out), out
        tail = await anyio.run_process(["tail", "-n1", target])
        assert tail.stdout.startswith(b"x") and tail.stdout.endswith(b"\n"), tail.stdout
        assert whole((await cat(target)).stdout)


async def test_errors(view: View, memcg: str) -> None:
    target = view.add("c1", memcg)["/proc/meminfo"]
    for missing in ("c1/proc/nope", "c2/proc/meminfo", "c1/nope"):
        res = await cat(str(view.mountpoint / missing))
        assert res.returncode != 0 and b"No such file" in res.stderr

    def open_for_write(flags: int) -> int:
        try:
            os.close(os.open(target, flags))
        except OSError as exc:
            return exc.errno
        return 0

    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC):
        assert await anyio.to_thread.run_sync(open_for_write, flags) == errno.EACCES
    # default_permissions: the kernel answers access() from the mode, as procfs does (root
    # may "write" /proc/loadavg by access(), the open for writing still fails)
    assert await anyio.to_thread.run_sync(os.access, target, os.W_OK) == os.access(
        "/proc/loadavg", os.W_OK
    )
    assert await anyio.to_thread.run_sync(os.access, target, os.R_OK)
    res = await anyio.run_process(["mkdir", str(view.mountpoint / "c1/x")], check=False)
    assert res.returncode != 0

    # cgroup that does not exist (yet): stat still works (runc stats bind sources during
    # create), reading fails with EIO, and the loop keeps serving.
    broken = view.add("broken", "/procfs-test-does-not-exist")["/proc/meminfo"]
    st = await anyio.to_thread.run_sync(os.stat, broken)
    assert st.st_size == 0
    res = await cat(broken)
    assert res.returncode != 0 and b"Input/output error" in res.stderr
    assert parse_meminfo((await cat(target)).stdout)["MemTotal"] == 256 * 1024


async def test_tree_listing_and_remove(view: View, memcg: str) -> None:
    view.add("c1", memcg)
    view.add("c2", None)
    ls = await anyio.run_process(["ls", str(view.mountpoint)])
    assert ls.stdout.split() == [b"c1", b"c2"]
    ls = await anyio.run_process(["ls", "-la", str(view.mountpoint / "c1/proc")])
    assert b"meminfo" in ls.stdout and b"-r--r--r--" in ls.stdout

    # unknown cgroup (None) shows the host file
    host = Path("/proc/meminfo").read_bytes()
    assert (
        parse_meminfo((await cat(str(view.mountpoint / "c2/proc/meminfo"))).stdout)["MemTotal"]
        == parse_meminfo(host)["MemTotal"]
    )

    view.remove("c1")
    res = await cat(str(view.mountpoint / "c1/proc/meminfo"))
    assert res.returncode != 0
    ls = await anyio.run_process(["ls", str(view.mountpoint)])
    assert ls.stdout.split() == [b"c2"]
    with pytest.raises(ValueError):
        view.add("c2", None)
    for bad in ("..", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            view.add(bad, None)
    with pytest.raises(ValueError):
        view.add("c3", None, ["/proc/kcore"])


async def test_set_init_pid(view: View, memcg: str) -> None:
    target = view.add("c1", None)["/proc/meminfo"]
    proc = await anyio.open_process(["sleep", "30"])
    try:
        (MEMCG / memcg.lstrip("/") / "cgroup.procs").write_text(str(proc.pid))
        view.set_init_pid("c1", proc.pid)
        assert parse_meminfo((await cat(target)).stdout)["MemTotal"] == 256 * 1024
    finally:
        proc.kill()
        await proc.wait()
        await proc.aclose()


async def test_one_session_per_process(view: View) -> None:
    with pytest.raises(RuntimeError):
        await View(view.mountpoint.parent / "other").run()


async def test_cancel_before_started_cleans_up(tmp_path: Path, fusectl: Path) -> None:
    before = fuse_connections(fusectl)
    v = View(tmp_path / "mnt")
    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(v.run)
            await anyio.sleep(0)  # run() mounts, then waits for the kernel handshake
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert not mounted(v.mountpoint) and not v.mountpoint.exists()
    assert fuse_connections(fusectl) == before


async def test_restart_after_cancel(tmp_path: Path, fusectl: Path) -> None:
    v = View(tmp_path / "deep" / "mnt")
    async with anyio.create_task_group() as tg:
        await tg.start(v.run)
        ours = fuse_connection(str(v.mountpoint))
        assert ours in fuse_connections(fusectl)
        v.add("c1", None)
        res = await cat(str(v.mountpoint / "c1/proc/meminfo"))
        assert res.returncode == 0
        tg.cancel_scope.cancel()
    assert not mounted(v.mountpoint) and not v.mountpoint.exists()
    # only our own connection: other shims on this host may come and go meanwhile
    assert ours not in fuse_connections(fusectl)
    # a second run in the same process works once the first has ended
    async with anyio.create_task_group() as tg:
        await tg.start(v.run)
        tg.cancel_scope.cancel()
    assert not mounted(v.mountpoint)


async def test_cgroup_v2_tree_added_before_mount(tmp_path: Path) -> None:
    """Registration before run() (the tree is in memory), on a v2 fixture hierarchy."""
    fixtures = Path(__file__).parent / "fixtures" / "cgroup_v2"
    v = View(tmp_path / "mnt", hierarchies=Hierarchies(v2=fixtures))
    target = v.add("ctr", "kubepods-pod1.slice:cri-containerd:abc")["/proc/meminfo"]
    async with anyio.create_task_group() as tg:
        await tg.start(v.run)
        m = parse_meminfo((await cat(target)).stdout)
        tg.cancel_scope.cancel()
    assert m["MemTotal"] == 512 * 1024 and m["Slab"] == 4096
    assert not mounted(v.mountpoint)


async def test_concurrent_readers_while_loop_stays_responsive(view: View, memcg: str) -> None:
    """procfs.fuseloop serves queued requests back to back: 8 shell readers, no error, same
    content, and the event loop still gets turns (a ticker task keeps running)."""
    target = view.add("c1", memcg)["/proc/meminfo"]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    script = f"for i in $(seq 200); do cat {target} > /dev/null || exit 1; done; cat {target}"
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        results: list[subprocess.CompletedProcess[bytes]] = []

        async def reader() -> None:
            results.append(await anyio.run_process(["sh", "-c", script], check=False))

        async with anyio.create_task_group() as readers:
            for _ in range(8):
                readers.start_soon(reader)
        tg.cancel_scope.cancel()
    assert [r.returncode for r in results] == [0] * 8
    assert all(parse_meminfo(r.stdout)["MemTotal"] == 256 * 1024 for r in results)
    assert ticks > 100


def test_pyfuse3_without_trio() -> None:
    """The view imports pyfuse3 without trio (~90 ms, ~3.7 MB per shim); trio stays importable."""
    code = (
        "import sys, procfs.view; assert 'trio' not in sys.modules, 'trio imported'; "
        "import importlib.util; print(importlib.util.find_spec('trio') is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0, out.stderr


def _sized_view(tmp_path, monkeypatch, queue: list[bytes]):
    """A view with one file whose renderings come from ``queue``, a fake clock and a fake
    kernel: ``kernel["size"]`` is the i_size it holds, ``kernel["invals"]`` counts the
    attribute invalidations."""
    import procfs.view as view_mod

    fixtures = Path(__file__).parent / "fixtures" / "cgroup_v2"
    v = View(tmp_path / "mnt", hierarchies=Hierarchies(v2=fixtures))
    v.add("ctr", "kubepods-pod1.slice:cri-containerd:abc")

    def producer(container, caller):
        return queue.pop(0)

    monkeypatch.setitem(view_mod.PRODUCERS, "/proc/meminfo", producer)
    node = next(n for n in v._nodes.values() if n.file == "/proc/meminfo")
    clock = [1000.0]
    monkeypatch.setattr(view_mod.time, "monotonic", lambda: clock[0])
    kernel = {"size": 0, "invals": 0}
    monkeypatch.setattr(view_mod.isize, "held_size", lambda fd: kernel["size"])

    def inval(inode, attr_only=False):
        kernel["invals"] += 1

    monkeypatch.setattr(view_mod.pyfuse3, "invalidate_inode", inval)

    def later(dt: float) -> None:
        clock[0] += dt + 1e-6

    return v, node, kernel, later


def test_sizes_without_a_descriptor(tmp_path, monkeypatch):
    """Before its descriptor is open a file cannot see the kernel's size: its length changes
    only with the first rendering, same-length renderings replace it after SHARE_WINDOW."""
    import procfs.view as view_mod

    queue = [b"a 1\n", b"a 2\n", b"a 33\n", b"a 4\n"]
    v, node, kernel, later = _sized_view(tmp_path, monkeypatch, queue)
    assert v._size(node, 11) == 4  # the first rendering
    assert v._size(node, 12) == 4 and len(queue) == 3  # within SHARE_WINDOW: shared
    later(view_mod.SHARE_WINDOW)
    assert v._size(node) == 4 and node.content == b"a 2\n"  # same length: replaced
    later(view_mod.SHARE_WINDOW)
    assert v._size(node) == 4 and node.content == b"a 2\n"  # "a 33": another length
    later(view_mod.SHARE_WINDOW)
    fh = v._open(node, 13)  # an open renders (it may come without a GETATTR)
    assert v._read(fh, 0, 100) == b"a 4\n"
    assert v._size(node) == 4 and node.content == b"a 4\n"
    assert kernel["invals"] == 0


def test_open_serves_the_length_the_kernel_holds(tmp_path, monkeypatch):
    """With a descriptor: the newest rendering is replied when nobody holds the file; an open
    gets the rendering of the length the kernel holds (a dropped reply leaves an older one),
    after voiding the replies still on their way; while it holds, replies repeat that size."""
    import procfs.view as view_mod

    queue = [b"a 1\n", b"a 22\n", b"a 33\n", b"a 4\n", b"a 5\n", b"a 6\n", b"a 7\n", b"a 7777\n"]
    v, node, kernel, later = _sized_view(tmp_path, monkeypatch, queue)
    node.fd = 99
    assert v._size(node, 11) == 4  # "a 1"
    kernel["size"] = 4  # applied
    later(view_mod.SHARE_WINDOW)
    busy = os.getpid()  # a live thread: its reply may still be applied
    assert v._size(node, busy) == 5  # "a 22": nobody holds the file, the newest goes out
    # ... and has not been applied yet when another thread opens: the kernel holds 4
    fh = v._open(node, 13)
    assert kernel["invals"] == 1  # a 5 may still be applied: voided first
    assert v._read(fh, 0, 100) == b"a 1\n"  # the length the kernel holds (recent enough)
    later(view_mod.SHARE_WINDOW)
    assert v._size(node, 14) == 4  # held: replies repeat the kernel's size ("a 33" is kept)
    fh2 = v._open(node, 15)  # every reply since the invalidation said 4: none needed
    assert kernel["invals"] == 1
    later(view_mod.SHARE_WINDOW)
    assert v._read(fh2, 0, 100) == b"a 1\n"  # its snapshot was taken at open
    fh3 = v._open(node, 16)
    assert v._read(fh3, 0, 100) == b"a 4\n"  # stale kept rendering: a fresh one of length 4
    for fh_ in (fh, fh2, fh3):
        v._release(fh_)
    later(view_mod.SHARE_WINDOW)
    assert v._size(node) == 4 and node.content == b"a 5\n"
    later(view_mod.GRACE)
    fh = v._open(node, 17)  # "a 6"
    later(view_mod.GRACE)
    assert v._size(node) == 4  # "a 7"; the idle handle holds nothing after GRACE
    assert v._read(fh, 0, 100) == b"a 7\n"  # its first read takes the current rendering
    assert v._read(fh, 0, 100) == b"a 7\n"  # page cache refilled in the same pass: same
    later(view_mod.REREAD_AFTER)
    assert v._read(fh, 0, 100) == b"a 7777\n"  # a new pass: fresh, private
    assert node.content == b"a 7\n"
    v._release(fh)
    assert not node.holders and not v._open_files


def test_a_size_shrinks_only_over_a_clean_page_cache(tmp_path, monkeypatch):
    """Applying a smaller size zeroes the cut-off bytes of the cached page in place, under any
    splice reader's pipe: a shrink waits until no page fill came since an invalidation began.
    A reply to a thread that has sent its next request (or exited) is settled."""
    import procfs.view as view_mod

    queue = [b"a 22\n", b"a 1\n", b"a 3\n", b"a 4\n"]
    v, node, kernel, later = _sized_view(tmp_path, monkeypatch, queue)
    node.fd = 99
    assert v._size(node, 11) == 5
    kernel["size"] = 5
    idle = v._open(node, 10)  # a read(2) reader done with its pass, still open
    assert v._read(idle, 0, 100) == b"a 22\n" and v._read(idle, 5, 100) == b""
    fh = v._open(node, 11)  # its own reply is settled: no invalidation
    assert kernel["invals"] == 0
    assert v._read(fh, 0, 4096) == b"a 22\n"  # a page fill (into a pipe, for all we know)
    v._release(fh)  # the file is still open: no invalidation from the loop
    assert kernel["invals"] == 0
    later(view_mod.SHARE_WINDOW)
    assert v._size(node, 12) == 5  # "a 1" is shorter: the page may still be in a pipe
    assert node.cleaning and list(v._to_clean) == [node]
    v._to_clean.clear()
    clock_now = view_mod.time.monotonic()  # the chores' invalidation, done
    node.cleaning, node.cleaned_at = False, clock_now
    later(view_mod.SHARE_WINDOW)
    assert v._size(node, 12) == 4  # invalidated since the last fill: "a 3" may go out
    fh = v._open(node, 12)
    v._read(fh, 0, 7)  # a read(2) of 7 bytes goes to the view directly: no page cache
    assert node.read_at < clock_now
    v._read(fh, 0, 4096)  # a fill again; when the last open file closes, the loop itself
    v._release(fh)  # invalidates (no fill can be under way then)
    before = kernel["invals"]
    v._release(idle)
    assert kernel["invals"] == before + 1 and node.cleaned_at >= node.read_at


def test_a_read_past_the_last_page_is_not_a_page_fill(tmp_path, monkeypatch):
    """Readahead never reads past the page of the last byte the kernel held, and the kernel
    never held more than the largest size replied: a 64 KiB read(2) of a 5-byte file goes to
    the view directly and costs no page-cache invalidation at close; a page-sized one may be
    a fill and does."""

    queue = [b"a 22\n"]
    v, node, kernel, _later = _sized_view(tmp_path, monkeypatch, queue)
    node.fd = 99
    assert v._size(node, 11) == 5 and node.max_replied == 5
    kernel["size"] = 5
    fh = v._open(node, 11)
    assert v._read(fh, 0, 65536) == b"a 22\n" and v._read(fh, 5, 65536) == b""
    assert node.read_at == float("-inf")
    v._release(fh)
    assert kernel["invals"] == 0
    fh = v._open(node, 11)
    assert v._read(fh, 0, 4096) == b"a 22\n" and node.read_at > node.cleaned_at
    v._release(fh)
    assert kernel["invals"] == 1 and node.cleaned_at >= node.read_at


def test_attribute_lifetime_only_for_a_size_an_open_can_serve(tmp_path, monkeypatch):
    """The kernel may keep a size for _ATTR_TIMEOUT (opens then send no GETATTR) only when it
    is the current rendering's: not the empty placeholder before the first rendering, not a
    length held for a reader (the newer length must reach the kernel at the next open)."""
    import procfs.view as view_mod

    queue = [b"a 1\n", b"a 22\n"]
    v, node, kernel, later = _sized_view(tmp_path, monkeypatch, queue)
    node.fd = 99
    a = v._attrs(node, 11, fresh=False)  # a LOOKUP before anything was rendered
    assert a.st_size == 0 and a.attr_timeout == 0
    a = v._attrs(node, 11)
    assert a.st_size == 4 and a.attr_timeout == view_mod._ATTR_TIMEOUT
    kernel["size"] = 4
    fh = v._open(node, 12)  # holds length 4 until it reads the end
    later(view_mod.SHARE_WINDOW)
    a = v._attrs(node, 13)  # "a 22": the held 4 is replied, for no lifetime
    assert a.st_size == 4 and a.attr_timeout == 0
    v._release(fh)


def test_an_exited_threads_reply_is_settled(tmp_path, monkeypatch):
    """A pending size reply of a thread that has exited was applied or dropped: no attribute
    invalidation for it. An open finding another length than the kernel's invalidates once
    (the next open asks again); with no kept rendering of that length it gets the newest."""
    import procfs.view as view_mod

    queue = [b"a 1\n", b"a 4444\n"]
    v, node, kernel, later = _sized_view(tmp_path, monkeypatch, queue)
    node.fd = 99
    gone = 4_194_305  # above any pid_max: no such thread
    assert not os.path.exists(f"/proc/{gone}")
    assert v._size(node, gone) == 4
    later(view_mod.SHARE_WINDOW)
    kernel["size"] = 7  # another reply, since applied
    fh = v._open(node, 12)  # renders "a 4444": the kernel's length
    assert kernel["invals"] == 0 and gone not in node.pending
    assert v._read(fh, 0, 100) == b"a 4444\n"
    v._release(fh)
    kernel["size"] = 9  # a length the view keeps no rendering of
    fh = v._open(node, 13)
    assert kernel["invals"] == 1
    assert v._read(fh, 0, 100) == b"a 4444\n"
    v._release(fh)
