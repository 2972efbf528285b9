"""The shim's FUSE filesystem: per-container, cgroup-aware /proc files (lxcfs-like).

Tree::

    <mountpoint>/<key>/proc/meminfo

One directory per container, so a file already knows whose view it is: no caller-pid lookup.
The shim bind-mounts ``<mountpoint>/<key>/proc/meminfo`` over the container's /proc/meminfo.

pyfuse3 runs inside the shim's own asyncio loop (anyio), so **nothing in the shim may touch the
mount synchronously** -- that request would wait for the very loop it blocks. Every handler here
is synchronous work on small files and never awaits, so requests are answered in one loop turn.

pyfuse3 keeps one FUSE session per process (module globals): :meth:`View.run` may run at most
once at a time in a process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import os
import re
import stat
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from procfs import fuseloop, isize, mounts, rebind
from procfs.cgroups import CgroupRef, Hierarchies, discover_hierarchies, ref_from_proc
from procfs.cgroups import resolve_spec_path as _resolve_spec_path
from procfs.container import Container
from procfs.files import PRODUCERS
from procfs.renderers.loadavg import INTERVAL as LOAD_INTERVAL
from procfs.tasks import scan_tasks, start_ticks

# pyfuse3 is Trio-native: run it on our asyncio integration (and never import trio).
pyfuse3 = fuseloop.import_pyfuse3()

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}")
#: Kernel cache lifetime (s) of directory entries, as lxcfs: short so a removed container
#: disappears quickly (only host-side path walks look names up; a bind is never looked up).
_TIMEOUT = 0.5
#: Readers within this window share one rendering (the view's freshness bound): a burst of
#: concurrent readers costs one render instead of one each.
SHARE_WINDOW = 0.005
#: Attribute lifetime, rounded up by the kernel to one tick (4 ms at HZ=250): with
#: ``default_permissions`` an open first asks for the size (GETATTR from the opener) once it
#: is older than that. An open is served the rendering of the length the kernel holds
#: (View._for_kernel), so a stale size costs freshness (the first open after a length change,
#: within the tick), never a whole read; 0 made that GETATTR a fifth request on every open.
_ATTR_TIMEOUT = 0.001
#: A handle holds the length it was opened on until it reads the end (read(2) readers: an
#: empty read), is released, or this long after its last read. A sendfile reader is never
#: seen reaching the end (its last call stops at i_size in the kernel) and may sit between
#: its page-cache fill and that call as long as its output pipe stays full; the bound only
#: keeps a file that someone holds open and never reads again from freezing its length.
#: Long-lived handles re-read privately after their first pass and then hold nothing.
GRACE = 30.0
#: A read from offset 0 starts a new pass with a fresh (private) rendering only when the
#: handle's snapshot is older than this: the page cache may be dropped by another reader's
#: open and refilled by this handle within one sendfile call, which must get the same bytes.
REREAD_AFTER = 0.1
#: How long after a shrink last had to wait page fills are still followed by invalidations.
SHRINK_PATIENCE = 1.0
#: Renderings kept per file, one per length: an open is served the one whose length the
#: kernel holds (a size reply the kernel dropped leaves it on an older length).
KEPT_LENGTHS = 16
#: Re-binds of one container after a lost session before it is given up (logged as an error).
REBIND_ATTEMPTS = 3
#: Page-cache fills read whole folios: page-aligned offset and size.
_PAGE_MASK = 4095
_DIR_MODE = stat.S_IFDIR | 0o555
_FILE_MODE = stat.S_IFREG | 0o444
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT

# One pyfuse3 session per process: set while a View is mounted.
_session_owner: View | None = None


def _nothing() -> None:
    pass


def _pages(size: int) -> int:
    """``size`` rounded up to whole pages (at least one)."""
    return max(size + _PAGE_MASK, _PAGE_MASK + 1) & ~_PAGE_MASK


class ViewLost(RuntimeError):
    """The FUSE session ended without being asked to (e.g. unmounted from outside)."""


@dataclass
class _Node:
    inode: int
    name: bytes
    parent: int
    key: str | None = None  # owning container; None for the root
    file: str | None = None  # container path for files ("/proc/meminfo"), None for dirs
    children: dict[bytes, int] = field(default_factory=dict)
    content: bytes = b""  # the newest rendering (files)
    sized_at: float = float("-inf")  # time.monotonic() of that render
    tried_at: float = float("-inf")  # last rendering made for it (kept or not)
    forced: bool = True  # take the next rendering whatever its length (nothing read yet)
    holders: dict[int, _Handle] = field(default_factory=dict)  # open handles on this file
    attrs: Any = None  # files: the pyfuse3.EntryAttributes every reply reuses
    #: O_PATH descriptor in the current session: reads the size the kernel holds (-1: none yet)
    fd: int = -1
    #: the newest rendering of each recent length, with its time (see KEPT_LENGTHS)
    lengths: dict[int, tuple[bytes, float]] = field(default_factory=dict)
    #: size replies that may still be applied, by the caller's thread id (None: unknown
    #: caller, a READDIRPLUS): a thread applies its reply before it sends another request
    pending: dict[int | None, int] = field(default_factory=dict)
    read_at: float = float("-inf")  # last READ served that may have been a page-cache fill
    cleaned_at: float = float("-inf")  # start of the last page-cache invalidation that ended
    cleaning: bool = False  # one is queued or running
    shrink_wanted: float = float("-inf")  # last time a smaller size had to wait for one
    #: the largest size ever replied: the kernel never holds more, and never fills past it
    max_replied: int = 0

    @property
    def is_dir(self) -> bool:
        return self.file is None

    def keep(self, data: bytes, now: float) -> None:
        self.lengths.pop(len(data), None)
        self.lengths[len(data)] = (data, now)
        if len(self.lengths) > KEPT_LENGTHS:
            del self.lengths[next(iter(self.lengths))]


@dataclass
class _Handle:
    """One open of a file: the bytes its reads are served from."""

    node: _Node
    snap: bytes
    opened: float
    reads: int = 0
    last_read: float = float("-inf")
    pass_started: float = float("-inf")  # first read served from snap
    shared: bool = True  # snap is a kept rendering (not a private re-read)
    done: bool = False  # a read found the end: read(2) readers end a pass so, splice never

    def holds_length(self, now: float) -> bool:
        return self.shared and not self.done and now - max(self.opened, self.last_read) < GRACE


T = TypeVar("T")


def _handler(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Make a synchronous handler a pyfuse3 coroutine; any non-FUSEError becomes EIO (logged).

    Handlers never await (one loop turn per request), so the handler itself is a plain
    function: one coroutine per request instead of two. pyfuse3 lets other exceptions escape
    its worker task: the request is then never answered (the reader hangs) and the worker
    dies -- one bad render must not take the loop down.
    """

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> T:
        try:
            return fn(*args)
        except pyfuse3.FUSEError:
            raise
        except Exception:
            log.exception("procfs view: %s failed", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


class View:
    """Per-shim FUSE mount holding every container's virtual /proc files."""

    def __init__(
        self,
        mountpoint: Path,
        *,
        fsname: str = "containerd-shim-lxcfs",
        hierarchies: Hierarchies | None = None,
    ) -> None:
        self._mountpoint = Path(mountpoint).absolute()
        self._fsname = fsname
        self._hierarchies = hierarchies
        self._inodes = itertools.count(pyfuse3.ROOT_INODE + 1)
        self._nodes: dict[int, _Node] = {
            pyfuse3.ROOT_INODE: _Node(pyfuse3.ROOT_INODE, b"", pyfuse3.ROOT_INODE)
        }
        self._containers: dict[str, Container] = {}
        self._handles = itertools.count(1)
        self._open_files: dict[int, _Handle] = {}
        self._open_dirs: dict[int, list[tuple[bytes, int]]] = {}
        self._started_ns = time.time_ns()
        self._session_started = time.monotonic()
        self._lost_at = float("-inf")  # when the last session was seen ending by itself
        self._ready: anyio.Event | None = None
        self._session_no = 0
        #: file nodes waiting for their O_PATH descriptor or for a page-cache invalidation
        #: (see _kernel_chores), and the chores' wake-up
        self._untracked: deque[_Node] = deque()
        self._to_clean: deque[_Node] = deque()
        self._track_wakeup: anyio.Event | None = None
        self._stopping = False
        self._lost = False
        #: Mount a new session when the current one dies (see :meth:`run`).
        self.remount = True
        self.remounts = 0  # sessions lost so far
        self.rebinds = 0  # completed re-bind passes

    @property
    def mountpoint(self) -> Path:
        return self._mountpoint

    @property
    def hierarchies(self) -> Hierarchies:
        if self._hierarchies is None:
            self._hierarchies = discover_hierarchies()
        return self._hierarchies

    # --- container registry (sync; safe to call before or while mounted) ---------------------

    def add(
        self, key: str, cgroups_path: str | None, files: Iterable[str] = ("/proc/meminfo",)
    ) -> dict[str, str]:
        """Register a container; return {container target: host bind source}.

        ``cgroups_path`` is the spec's ``linux.cgroupsPath`` (None: unknown until
        :meth:`set_init_pid`; the files show the host's content meanwhile). The files answer
        as soon as this returns, which ``runc create`` relies on.
        """
        if not _KEY_RE.fullmatch(key) or key in (".", ".."):
            raise ValueError(f"container key is not a safe path component: {key!r}")
        if key in self._containers:
            raise ValueError(f"container {key!r} already registered")
        files = list(dict.fromkeys(files))
        unknown = [f for f in files if f not in PRODUCERS]
        if unknown:
            raise ValueError(f"no virtual file for {unknown}")
        ref = _resolve_spec_path(cgroups_path, self.hierarchies) if cgroups_path else None
        container = Container(key, ref)
        top = self._mknode(pyfuse3.ROOT_INODE, key.encode(), container)
        mapping: dict[str, str] = {}
        for target in files:
            parent = top
            *dirs, leaf = target.strip("/").split("/")
            for d in dirs:
                existing = self._nodes[parent].children.get(d.encode())
                parent = existing or self._mknode(parent, d.encode(), container)
            self._mknode(parent, leaf.encode(), container, file=target)
            mapping[target] = str(self._mountpoint / key / target.lstrip("/"))
        container.files = mapping
        self._containers[key] = container
        if self._ready_set():
            self._track(container)
        return mapping

    def set_init_pid(self, key: str, pid: int) -> CgroupRef:
        """Take the container's cgroup from ``/proc/<pid>/cgroup`` (authoritative) and its
        start time (uptime, btime); the FUSE-remount path re-binds inside this pid's mount
        namespace. Returns that cgroup (the service's stats and OOM watch use it too)."""
        c = self._containers[key]
        c.ref = ref_from_proc(pid, self.hierarchies)
        c.init_pid = pid
        c.init_start = start_ticks(pid)
        for inode in c.inodes:  # renderings made during runc create predate the limits
            node = self._nodes.get(inode)
            if node is not None:
                node.sized_at = node.tried_at = float("-inf")
                node.forced = True
                node.lengths.clear()  # never served again, whatever length the kernel holds
                node.pending.clear()  # voided by the invalidation below
                if node.file is not None and _session_owner is self and self._ready_set():
                    # the kernel refetches the size on the next open (no wait for a tick)
                    with contextlib.suppress(OSError):
                        pyfuse3.invalidate_inode(inode, attr_only=True)
        self._sample(c)
        return c.ref

    def container(self, key: str) -> Container | None:
        """The registered container ``key`` (its cgroup and load history), if any."""
        return self._containers.get(key)

    def remove(self, key: str) -> None:
        """Forget a container. Open handles keep their content; new lookups get ENOENT."""
        container = self._containers.pop(key, None)
        if container is None:
            return
        root = self._nodes[pyfuse3.ROOT_INODE]
        root.children.pop(key.encode(), None)
        for inode in container.inodes:
            node = self._nodes.pop(inode, None)
            if node is not None:
                self._untrack(node)

    # --- the descriptors that read the kernel's sizes (procfs.isize) -------------------------

    def _track(self, container: Container) -> None:
        """Queue the container's files for a descriptor (opened off the loop)."""
        for inode in container.inodes:
            node = self._nodes.get(inode)
            if node is not None and not node.is_dir and node.fd < 0:
                self._untracked.append(node)
        if self._track_wakeup is not None:
            self._track_wakeup.set()

    def _untrack(self, node: _Node) -> None:
        if node.fd >= 0:
            os.close(node.fd)
            node.fd = -1
        node.pending.clear()
        node.read_at = node.cleaned_at = float("-inf")  # a new session: no page cached yet
        node.cleaning = False

    async def _kernel_chores(self) -> None:
        """The view's calls into its own mount, made in a thread (they wait for this loop):
        opening each file's O_PATH descriptor (the walk sends LOOKUPs), and invalidating a
        file's page cache before its size may shrink (see :meth:`_shrinkable`)."""
        while True:
            self._track_wakeup = anyio.Event()
            while self._untracked:
                node = self._untracked.popleft()
                session = self._session_no
                if node.fd >= 0 or self._nodes.get(node.inode) is not node:
                    continue
                path = self._mountpoint / (node.key or "") / (node.file or "").lstrip("/")
                try:
                    fd = await anyio.to_thread.run_sync(isize.open_path, path)
                except OSError as exc:  # session ending, container gone: nothing to size
                    log.debug("procfs view: no descriptor for %s: %s", path, exc)
                    continue
                if (
                    session != self._session_no
                    or not self._ready_set()
                    or node.fd >= 0
                    or self._nodes.get(node.inode) is not node
                ):
                    os.close(fd)
                else:
                    node.fd = fd
            while self._to_clean:
                node = self._to_clean.popleft()
                session, started = self._session_no, time.monotonic()
                try:
                    if node.fd >= 0 and self._ready_set():
                        # blocks while a page fill is in flight: this loop answers it meanwhile
                        await anyio.to_thread.run_sync(pyfuse3.invalidate_inode, node.inode)
                        if session == self._session_no:
                            node.cleaned_at = started
                            if (  # filled again meanwhile, and the shrink still waits
                                node.read_at > started
                                and started - node.shrink_wanted < SHRINK_PATIENCE
                            ):
                                self._to_clean.append(node)
                                continue
                except OSError as exc:
                    log.debug("procfs view: page cache of %s in %s: %s", node.file, node.key, exc)
                node.cleaning = False
            await self._track_wakeup.wait()

    def _mknode(
        self, parent: int, name: bytes, container: Container, file: str | None = None
    ) -> int:
        inode = next(self._inodes)
        self._nodes[inode] = _Node(inode, name, parent, container.key, file)
        self._nodes[parent].children[name] = inode
        container.inodes.append(inode)
        return inode

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Mount, serve until cancelled, then unmount and remove the mountpoint.

        ``task_status.started()`` fires once the kernel has finished the first FUSE handshake,
        i.e. requests are being answered. If the session later dies on its own (connection
        aborted, unmounted from outside), the view mounts a new one at the same place and
        re-binds it under every running container (:mod:`procfs.rebind`); with
        ``remount=False`` it raises :class:`ViewLost` instead. The load-average sampler runs
        beside the session. Only one View may run at a time per process (pyfuse3 limitation).
        """
        global _session_owner
        if _session_owner is not None:
            raise RuntimeError("a pyfuse3 session is already running in this process")
        _session_owner = self
        created = not self._mountpoint.exists()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._sample_loads)
                tg.start_soon(self._warm_rebind)
                tg.start_soon(self._kernel_chores)
                on_ready: Callable[[], None] = task_status.started
                on_mounted: Callable[[], None] | None = None
                quick = 0  # sessions in a row that died within 50 ms of starting
                while True:
                    try:
                        await self._session(on_ready, on_mounted)
                    except ViewLost as exc:
                        if not self.remount:
                            raise
                        self.remounts += 1
                        self._lost_at = time.monotonic()
                        log.error(
                            "procfs view: %s; mounting a new session (#%d)", exc, self.remounts
                        )
                        # at once: every ms here is a ms of failed reads in the containers;
                        # back off only if sessions keep dying right after they start
                        lived = time.monotonic() - self._session_started
                        quick = quick + 1 if lived < 0.05 else 0
                        await anyio.sleep(min(0.05 * quick, 1.0))
                        # the re-bind starts as soon as the new session is mounted: its
                        # lookups wait in the kernel for the INIT handshake, not for us
                        on_ready = _nothing
                        on_mounted = functools.partial(tg.start_soon, self._rebind_all)
        finally:
            with anyio.CancelScope(shield=True):
                if created:
                    try:
                        self._mountpoint.rmdir()
                    except OSError as exc:
                        log.warning("procfs view: cannot remove %s: %s", self._mountpoint, exc)
                _session_owner = None

    async def _session(
        self, on_ready: Callable[[], None], on_mounted: Callable[[], None] | None = None
    ) -> None:
        """One pyfuse3 session: mount, serve, always unmount. ViewLost if it ends by itself.

        ``on_mounted`` runs once the kernel has the mount (requests queue until the INIT
        reply), ``on_ready`` once INIT is answered."""
        self._stopping = False
        self._lost = False
        self._ready = anyio.Event()
        self._session_no += 1
        self._session_started = time.monotonic()
        mounted = False
        try:
            self._mountpoint.mkdir(mode=0o755, parents=True, exist_ok=True)
            options = {
                "allow_other",  # container processes are other uids / user namespaces
                f"fsname={self._fsname}",
                "subtype=shim-lxcfs",
                "nosuid",
                "nodev",
                "noexec",
                # the kernel checks modes itself, and refreshes attributes (GETATTR, from the
                # opener) before every open: see View._for_kernel
                "default_permissions",
            }
            try:
                pyfuse3.init(_Operations(self), str(self._mountpoint), options)
            except RuntimeError as exc:
                # fuse_session_new succeeded but mounting failed: free the session.
                if "mount" in str(exc):
                    pyfuse3.close(unmount=False)
                raise
            mounted = True
            if on_mounted is not None:
                on_mounted()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._serve, tg.cancel_scope)
                try:
                    with anyio.fail_after(10):
                        await self._ready.wait()
                    on_ready()
                    await anyio.sleep_forever()
                finally:
                    self._terminate()
            if self._lost:  # raised here, not in the task group: no ExceptionGroup to unwrap
                raise ViewLost(f"FUSE session at {self._mountpoint} ended unexpectedly")
        finally:
            with anyio.CancelScope(shield=True):
                self._untracked.clear()
                self._to_clean.clear()
                for node in self._nodes.values():  # descriptors of this session's inodes
                    self._untrack(node)
                if mounted:
                    pyfuse3.close(unmount=True)
                    if self._lost:
                        # libfuse skips the unmount of an aborted connection: detach the
                        # dead mount ourselves (no FUSE request involved), or the next
                        # session would stack on top of it.
                        with contextlib.suppress(OSError):
                            mounts.umount(str(self._mountpoint))
                for h in self._open_files.values():  # the dead session's handles
                    h.node.holders.clear()
                self._open_files.clear()
                self._open_dirs.clear()

    async def _serve(self, scope: anyio.CancelScope) -> None:
        # Shielded: cancelling pyfuse3.main() only cancels its outer task, orphaning the worker
        # tasks (its asyncio "nursery" does not cancel children). We stop it via terminate().
        with anyio.CancelScope(shield=True):
            # One worker: every handler answers without awaiting, so a second worker would
            # only add task switches (pyfuse3 spawns one per request while none is idle).
            await pyfuse3.main(min_tasks=1, max_tasks=1)
        if not self._stopping:
            self._lost = True
            scope.cancel()

    def _terminate(self) -> None:
        self._stopping = True
        # A worker busy with a request sees the exit flag when it is done (procfs.fuseloop).
        pyfuse3.terminate()

    async def _warm_rebind(self) -> None:
        """Start the re-bind threads once the shim is past its start-up (off the critical
        path of container creation): recovery then starts no thread."""
        await anyio.sleep(1.0)
        rebind.warm()

    async def _rebind_all(self) -> None:
        """Give every running container the new session (procfs.rebind), all at once: one
        container's slowest file does not hold up the next container's files."""

        async def one(c: Container) -> None:
            assert c.init_pid is not None
            for attempt in range(1, REBIND_ATTEMPTS + 1):
                try:
                    done = await rebind.rebind(c.init_pid, c.files)
                except (OSError, TimeoutError) as exc:
                    # a container left on the dead session reads ENOTCONN until it is gone:
                    # try again (a re-bind of a file already re-bound is harmless)
                    level = logging.ERROR if attempt == REBIND_ATTEMPTS else logging.WARNING
                    log.log(
                        level,
                        "procfs view: cannot re-bind the view of %s (attempt %d/%d): %s",
                        c.key,
                        attempt,
                        REBIND_ATTEMPTS,
                        exc,
                    )
                    await anyio.sleep(0.01 * attempt)
                    continue
                log.info(
                    "procfs view: re-bound %s in %s, %.1f ms after the session ended",
                    done,
                    c.key,
                    (time.monotonic() - self._lost_at) * 1e3,
                )
                return

        async with anyio.create_task_group() as tg:
            for c in list(self._containers.values()):
                if c.init_pid is not None and c.files:
                    tg.start_soon(one, c)
        self.rebinds += 1

    # --- load average -------------------------------------------------------------------------

    def _sample(self, c: Container) -> None:
        if c.ref is None:
            return
        try:
            t = scan_tasks(c.ref)
        except (OSError, LookupError, ValueError) as exc:
            log.debug("procfs view: load sample of %s: %s", c.key, exc)
            return
        c.load.sample(t.running + t.blocked)

    async def _sample_loads(self) -> None:
        """Every 5 s like the kernel: runnable + uninterruptible threads of each container."""
        while True:
            await anyio.sleep(LOAD_INTERVAL)
            for c in list(self._containers.values()):
                self._sample(c)

    def _ready_set(self) -> bool:
        return self._ready is not None and self._ready.is_set() and not self._lost

    def _kernel_ready(self) -> None:
        if self._ready is not None:
            self._ready.set()
        for c in self._containers.values():
            self._track(c)

    # --- request helpers ----------------------------------------------------------------------

    def _node(self, inode: int) -> _Node:
        node = self._nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _attrs(
        self, node: _Node, caller: int | None = None, *, fresh: bool = True
    ) -> pyfuse3.EntryAttributes:
        if not node.is_dir:
            # A file's attributes differ only in size: one object per file, refilled (pyfuse3
            # copies it into the reply before the next request is read).
            a = node.attrs
            if a is None:
                a = node.attrs = self._new_attrs(node)
            a.st_size = size = self._reply_size(node, caller, fresh)
            # the kernel may keep a size for its lifetime only when an open can be served a
            # rendering of that length: the current one (kept), not an empty placeholder from
            # before the first rendering or a held length about to be given up
            a.attr_timeout = _ATTR_TIMEOUT if size == len(node.content) and not node.forced else 0.0
            return a
        return self._new_attrs(node)

    def _new_attrs(self, node: _Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.inode
        a.generation = 0
        a.entry_timeout = _TIMEOUT
        a.attr_timeout = _TIMEOUT if node.is_dir else _ATTR_TIMEOUT
        if node.is_dir:
            a.st_mode = _DIR_MODE
            a.st_nlink = 2 + sum(self._nodes[c].is_dir for c in node.children.values())
            a.st_size = 0
        else:
            a.st_mode = _FILE_MODE
            a.st_nlink = 1
        a.st_uid = a.st_gid = 0
        a.st_blksize = 4096
        a.st_blocks = 0
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._started_ns
        return a

    def _render(self, node: _Node, caller: int | None = None) -> bytes:
        assert node.file is not None and node.key is not None
        container = self._containers.get(node.key)
        if container is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return PRODUCERS[node.file](container, caller)

    # --- sizes: what the kernel holds -----------------------------------------------------
    #
    # sendfile/splice (busybox ``cat``) on a FUSE file reads through the inode's page cache
    # even with direct_io (Linux 6.5+), and copies no further than the inode's i_size, which
    # every reader of the file shares. So an open is served the rendering whose length the
    # kernel holds (read with isize.held_size, after an attribute invalidation has voided every
    # size reply still on its way), and while any handle holds that length every size reply
    # repeats it. Without a descriptor yet (the first milliseconds of a container) the length
    # changes only with the first rendering.

    def _refresh(self, node: _Node, caller: int | None, now: float) -> None:
        """Render the file again if the newest rendering is older than SHARE_WINDOW. A render
        that fails here (cgroup not created yet while runc stats the bind source) keeps the
        old one."""
        if now - max(node.sized_at, node.tried_at) < SHARE_WINDOW:
            return
        node.tried_at = now  # a failing or held-back rendering is not redone per request
        try:
            fresh = self._render(node, caller)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            log.debug("procfs view: rendering %s of %s: %s", node.file, node.key, exc)
            return
        node.keep(fresh, now)
        if node.fd >= 0 or node.forced or len(fresh) == len(node.content):
            node.content, node.sized_at, node.forced = fresh, now, False

    def _held(self, node: _Node, now: float) -> bool:
        return any(h.holds_length(now) for h in node.holders.values())

    def _kernel_size(self, node: _Node) -> int | None:
        if node.fd < 0:
            return None
        try:
            return isize.held_size(node.fd)
        except OSError as exc:
            log.debug("procfs view: size of %s in %s: %s", node.file, node.key, exc)
            return None

    def _reply_size(self, node: _Node, caller: int | None, fresh: bool) -> int:
        """st_size for a GETATTR (``fresh``: render if due) or LOOKUP/READDIRPLUS reply."""
        now = time.monotonic()
        if fresh:
            self._refresh(node, caller, now)
        size = len(node.content)
        if node.fd >= 0 and (node.holders or node.read_at > node.cleaned_at):
            held = self._kernel_size(node)
            if held is not None and (
                self._held(node, now) or (size < held and not self._shrinkable(node, now))
            ):
                size = held  # its readers' length stays what the kernel holds
        node.pending[caller] = size
        if size > node.max_replied:
            node.max_replied = size
        return size

    def _shrinkable(self, node: _Node, now: float) -> bool:
        """May a reply make the kernel's size smaller? Applying it truncates the page cache,
        zeroing the cut-off bytes in place: bytes a splice reader already put in its output
        pipe (by reference, not copied) would turn to NULs before anyone reads the pipe. So
        only when no page-cache fill came since a page-cache invalidation started (it leaves
        the pipes' pages out of the file). While a shrink waits, one is queued now and after
        every fill (see _read); a length that only grows costs none."""
        if node.read_at <= node.cleaned_at:
            return True
        node.shrink_wanted = now
        self._clean_soon(node)
        return False

    def _clean_soon(self, node: _Node) -> None:
        if not node.cleaning:
            node.cleaning = True
            self._to_clean.append(node)
            if self._track_wakeup is not None:
                self._track_wakeup.set()

    def _size(self, node: _Node, caller: int | None = None) -> int:
        return self._reply_size(node, caller, True)

    def _settled_size(self, node: _Node, caller: int | None) -> tuple[int | None, bool]:
        """The size the kernel holds, once no size reply already sent can change it, and
        whether the attributes were invalidated for that.

        A reply is applied by its caller after it wakes (or dropped). The caller's own is
        done once it sends this request; a thread that has exited has applied its own. If
        another one carries a different size, an attribute invalidation voids it first."""
        node.pending.pop(caller, None)
        held = self._kernel_size(node)
        for tid, size in list(node.pending.items()):
            if size != held:
                if tid is not None and not os.path.exists(f"/proc/{tid}"):
                    del node.pending[tid]
                    continue
                self._void_replies(node)
                return self._kernel_size(node), True  # stays until a later reply of ours
        return held, False

    def _void_replies(self, node: _Node) -> None:
        """An attribute invalidation: the kernel drops every size reply to a request queued
        before it, and the next open asks for the size again."""
        with contextlib.suppress(OSError):
            pyfuse3.invalidate_inode(node.inode, attr_only=True)
        node.pending.clear()

    def _for_kernel(self, node: _Node, caller: int | None, now: float) -> bytes:
        """The rendering for a new pass: the one whose length the kernel holds.

        Size replies still on their way may be applied unless an attribute invalidation
        reaches the inode before: so if one of them carries another size than the kernel
        holds, invalidate first. The size read after that stays until a later reply of ours
        changes it. An open within the attribute lifetime sends no GETATTR: render here."""
        self._refresh(node, caller, now)
        if node.fd < 0:
            return node.content
        held, voided = self._settled_size(node, caller)
        if held is None or held == len(node.content):
            return node.content
        # The length changed since the kernel took its size: this open gets the rendering that
        # size came from (at most _ATTR_TIMEOUT old); the next one asks for the size again
        # (unless a reader holds the length: those replies have no lifetime anyway).
        if not voided and not self._held(node, now):
            self._void_replies(node)
        kept = node.lengths.get(held)
        if kept is not None:
            return kept[0]
        # never replied by this session: nothing reads the file through the page cache yet
        log.debug("procfs view: no rendering of %s bytes for %s", held, node.file)
        return node.content

    # --- open files ---------------------------------------------------------------------------

    def _open(self, node: _Node, caller: int) -> int:
        now = time.monotonic()
        if node.forced:  # nothing rendered since (re)registration: a failure is EIO here
            node.content = self._render(node, caller)
            node.sized_at = node.tried_at = now
            node.forced = False
            node.keep(node.content, now)
        fh = next(self._handles)
        h = _Handle(node, self._for_kernel(node, caller, now), now)
        self._open_files[fh] = h
        node.holders[fh] = h
        return fh

    def _read(self, fh: int, off: int, size: int) -> bytes:
        h = self._open_files.get(fh)
        if h is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        now = time.monotonic()
        # could be a page-cache fill: those read whole pages, never past the page of the last
        # byte the kernel held (readahead stops there); read(2) of any size and offset goes
        # to the view directly, and most have a size like no other
        fill = not (off | size) & _PAGE_MASK and off + size <= _pages(h.node.max_replied)
        if h.reads == 0:
            if now - h.opened >= GRACE:  # held nothing meanwhile: take the current length
                h.snap = self._for_kernel(h.node, None, now)
            h.pass_started = now
        elif off == 0 and (h.done or (not fill and now - h.pass_started >= REREAD_AFTER)):
            # a new pass over the file: fresh, for this handle alone. Not for a page fill
            # before the end was seen: the page may have been dropped under its own splice
            # (another open, an invalidation) and refilled, and must get the same length.
            h.snap, h.shared, h.pass_started, h.done = self._private(h), False, now, False
        h.reads += 1
        h.last_read = now
        if fill:
            h.node.read_at = now
            if now - h.node.shrink_wanted < SHRINK_PATIENCE:
                self._clean_soon(h.node)  # out of the file before the shrink may truncate it
        data = h.snap[off : off + size]
        if not data:  # a page-cache fill never reads past the size it was given
            h.done = True
        return data

    def _private(self, h: _Handle, caller: int | None = None) -> bytes:
        """A fresh rendering for one handle re-reading from offset 0 (procfs semantics, and
        what tools keeping the file open -- procps -- expect)."""
        try:
            return self._render(h.node, caller)
        except pyfuse3.FUSEError:
            raise
        except Exception:
            log.exception("procfs view: re-rendering %s of %s", h.node.file, h.node.key)
            raise pyfuse3.FUSEError(errno.EIO) from None

    def _release(self, fh: int) -> None:
        h = self._open_files.pop(fh, None)
        if h is not None:
            node = h.node
            node.holders.pop(fh, None)
            if not node.holders and node.fd >= 0 and node.read_at > node.cleaned_at:
                self._clean_now(node)

    def _clean_now(self, node: _Node) -> None:
        """Drop the file's page cache from this loop once nobody has it open, so that the
        next reply may shrink the size (a limit lowered between two reads shows on the next).

        No page fill can be under way then: fills run inside reads of an open file, and the
        READs sent before this RELEASE were answered before it; so the invalidation does not
        wait for this loop. It voids the size replies on their way too."""
        now = time.monotonic()
        try:
            pyfuse3.invalidate_inode(node.inode)
        except OSError as exc:
            log.debug("procfs view: page cache of %s in %s: %s", node.file, node.key, exc)
            return
        node.cleaned_at = now
        node.pending.clear()


class _Operations(pyfuse3.Operations):
    """pyfuse3 request handlers; all state lives in the :class:`View`."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, view: View) -> None:
        super().__init__()
        self._v = view

    def init(self) -> None:
        # Called while processing FUSE_INIT; the reply goes out before the loop turns again.
        self._v._kernel_ready()

    @_handler
    def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._v._node(parent_inode)
        if name == b".":
            return self._v._attrs(parent)
        if name == b"..":
            return self._v._attrs(self._v._node(parent.parent))
        inode = parent.children.get(name)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._v._attrs(self._v._node(inode), ctx.pid, fresh=False)

    @_handler
    def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._v._attrs(self._v._node(inode), ctx.pid)

    @_handler
    def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        self._v._node(inode)
        return not mode & os.W_OK

    @_handler
    def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._v._node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._v._handles)
        # Listing fixed at opendir, so paging through it is stable while containers come and go.
        self._v._open_dirs[fh] = sorted(node.children.items())
        return fh

    @_handler
    def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self._v._open_dirs.get(fh, [])
        for idx in range(start_id, len(entries)):
            name, inode = entries[idx]
            node = self._v._nodes.get(inode)
            if node is None:
                continue
            if not pyfuse3.readdir_reply(token, name, self._v._attrs(node, fresh=False), idx + 1):
                break

    @_handler
    def releasedir(self, fh: int) -> None:
        self._v._open_dirs.pop(fh, None)

    @_handler
    def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._v._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EACCES)
        # direct_io: read(2) bypasses the page cache and i_size (the reply's length is the
        # end of file); keep_cache off: pages a sendfile reader filled are dropped.
        return pyfuse3.FileInfo(fh=self._v._open(node, ctx.pid), direct_io=True, keep_cache=False)

    @_handler
    def read(self, fh: int, off: int, size: int) -> bytes:
        return self._v._read(fh, off, size)

    @_handler
    def flush(self, fh: int) -> None:
        # ENOSYS once and the kernel stops sending FLUSH on every close (one round trip).
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @_handler
    def release(self, fh: int) -> None:
        self._v._release(fh)

    @_handler
    def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_namemax = 255
        return s

    async def _denied(self, *args: Any, **kwargs: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EACCES)

    # Read-only tree: refuse changes with EACCES rather than pyfuse3's default ENOSYS.
    setattr = create = mknod = mkdir = unlink = rmdir = symlink = rename = link = _denied
    setxattr = removexattr = write = _denied
