"""Put a remounted view back under a running container's /proc files, without a gap.

After the FUSE session dies, every bind in the container points at the dead connection
(``Transport endpoint is not connected``). The fix must happen inside the container's mount
namespace, where the host path of the view is not visible. So a helper thread of the shim
(the event loop keeps serving the FUSE lookups the thread triggers; with its own fs_struct a
single thread may enter another mount namespace) does, per container:

1. ``open_tree(OPEN_TREE_CLONE)`` on each new view file, in the host namespace;
2. ``setns`` into the init's mount namespace;
3. for each target whose current top mount is a FUSE mount: ``move_mount`` the clone
   *beneath* the stale mount (Linux >= 6.5), then lazily unmount the stale one above it. The
   path always has a view mount on top -- the dead one (reads fail) or the new one -- never
   the container's own procfs file (the host's numbers). Where mounting beneath is refused
   (a locked mount in a user namespace, an older kernel) the stale mounts are unmounted
   first and the clone attached after: two syscalls during which the procfs file shows.

Also runnable as ``python -m procfs.rebind <pid> <source> <target> [...]`` (for debugging).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TypeVar

import anyio

from procfs import mounts

log = logging.getLogger(__name__)
T = TypeVar("T")


#: A helper that has not finished by then is killed: its FUSE lookups are answered by the
#: shim's loop, the rest are local syscalls.
TIMEOUT = 10.0


def _fuse_mounts(pid: int) -> Counter[str]:
    """How many FUSE mounts are stacked at each mount point of ``pid``'s mount namespace.

    Read from the host's /proc before entering: inside, /proc is the container's procfs,
    where this helper (another pid namespace) has no /proc/self."""
    count: Counter[str] = Counter()
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            if len(fields) > 4 and post.startswith("fuse"):
                count[fields[4]] += 1
    return count


def _clone(src: str) -> int:
    fd = mounts.open_tree_clone(src)
    try:
        mounts.set_read_only(fd)
    except OSError:
        os.close(fd)
        raise
    return fd


def _clone_all(pairs: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """Detached read-only clones of every source, the path walks in parallel.

    Each walk is a chain of FUSE lookups answered by the shim's loop (which serves queued
    requests back to back): in parallel the re-bind waits for the deepest path (6 lookups for
    /sys/devices/system/cpu/online) rather than for all of them (~15) one after another."""
    if len(pairs) < 2:
        return [(_clone(src), target) for src, target in pairs]
    with concurrent.futures.ThreadPoolExecutor(len(pairs), "rebind-clone") as pool:
        futures = [(pool.submit(_clone, src), target) for src, target in pairs]
    out: list[tuple[int, str]] = []
    error: OSError | None = None
    for fut, target in futures:
        try:
            out.append((fut.result(), target))
        except OSError as exc:
            error = error or exc
    if error is not None:
        for fd, _ in out:
            os.close(fd)
        raise error
    return out


def rebind_here(pid: int, pairs: list[tuple[str, str]]) -> list[str]:
    """Helper-side work; returns the targets re-bound ("<target>!" where a gap was left).

    Enters ``pid``'s mount namespace for good: run it in a process or thread of its own.
    The clones are made first, in parallel threads, then this thread takes its own fs_struct
    and enters."""
    trees: list[tuple[int, str]] = []
    ns = -1
    try:
        trees += _clone_all(pairs)
        stale_at = _fuse_mounts(pid)
        ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        # Our own fs_struct, only now: the clone threads shared the process's, and a thread
        # that was joined may not have left the kernel yet (setns wants no other user).
        mounts.unshare_fs()
        mounts.setns_mnt(ns)
        done = []
        for fd, target in trees:
            stale = stale_at[target]
            if not stale:
                continue  # never bound here (the user's own mount, or skipped): leave it
            done.append(_replace(fd, target, stale))
        return done
    finally:
        for fd, _ in trees:
            os.close(fd)
        if ns >= 0:
            os.close(ns)


def main(argv: list[str]) -> int:
    pid, rest = int(argv[0]), argv[1:]
    pairs = list(zip(rest[::2], rest[1::2], strict=True))
    try:
        done = rebind_here(pid, pairs)
    except OSError as exc:
        print(f"rebind {pid}: {exc}", file=sys.stderr)
        return 1
    print(" ".join(done))
    return 0


def _replace(fd: int, target: str, stale: int) -> str:
    """Put one clone in place of the stale bind at ``target`` (in the entered namespace)."""
    try:
        mounts.attach(fd, target, beneath=True)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EPERM):
            raise
        for _ in range(stale):
            mounts.umount(target)
        mounts.attach(fd, target)
        return target + "!"
    mounts.umount(target)  # the stale one on top; any older ones stay covered below
    return target


class _Workers:
    """Threads kept ready for the next recovery (creating them is on the critical path).

    A worker entering a container's mount namespace does it with its own fs_struct and
    returns to the shim's namespace afterwards, so any worker can take any task. Each
    replacement runs in its own worker: the lazy unmounts then wait for their RCU grace
    periods together instead of one after another."""

    SIZE = 10  # the nine files of one container at once, and one more

    def __init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(self.SIZE, "procfs-rebind")
        self.home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        barrier = threading.Barrier(self.SIZE)
        for _ in range(self.SIZE):  # start them all now
            self.pool.submit(barrier.wait, 5.0)

    def replace_in(self, ns: int, fd: int, target: str, stale: int) -> str:
        mounts.unshare_fs()
        mounts.setns_mnt(ns)
        try:
            return _replace(fd, target, stale)
        finally:
            mounts.setns_mnt(self.home)


_workers: _Workers | None = None


def warm() -> None:
    """Start the re-bind threads ahead of need (the view calls this once it is mounted)."""
    global _workers
    if _workers is None:
        _workers = _Workers()


async def rebind(pid: int, files: Mapping[str, str]) -> list[str]:
    """Re-bind ``files`` (container target → host source) inside ``pid``'s mount namespace.

    Done by threads of the shim while the event loop answers their FUSE lookups: no process
    has to be started and scheduled (a fork or an interpreter costs milliseconds to tens of
    milliseconds on a loaded node, all of them failed reads in the container). Clones are
    made in parallel, then every target is replaced in parallel.
    """
    warm()
    assert _workers is not None
    pool = _workers.pool

    async def run(fn: Callable[..., T], *args: object) -> T:
        return await asyncio.wrap_future(pool.submit(fn, *args))

    with anyio.fail_after(TIMEOUT):
        results = await asyncio.gather(
            *(run(_clone, src) for src in files.values()), return_exceptions=True
        )
        trees = [
            (fd, target) for fd, target in zip(results, files, strict=True) if isinstance(fd, int)
        ]
        ns = -1
        try:
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            stale_at = _fuse_mounts(pid)
            jobs = [
                run(_workers.replace_in, ns, fd, target, stale_at[target])
                for fd, target in trees
                if stale_at[target]
            ]
            done = await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            for fd, _ in trees:
                os.close(fd)
            if ns >= 0:
                os.close(ns)
    errors = [r for r in done if isinstance(r, BaseException)]
    if errors:
        raise errors[0] if isinstance(errors[0], OSError) else OSError(str(errors[0]))
    return list(done)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
