"""Put a remounted view back under a running container's /proc files.

After the FUSE session dies, every bind in the container points at the dead connection
(``Transport endpoint is not connected``). The fix must happen inside the container's mount
namespace, where the host path of the view is not visible. So a helper process (the shim's
event loop serves the FUSE requests the helper triggers, and setns needs a single-threaded
process) does, per container:

1. ``open_tree(OPEN_TREE_CLONE)`` on each new view file, in the host namespace;
2. ``setns`` into the init's mount namespace;
3. for each target whose current top mount is a FUSE mount: lazy-unmount the stale FUSE
   mounts stacked there, then ``move_mount`` the clone onto it (ro, nosuid, nodev, noexec).

Run as ``python -m procfs.rebind <pid> <source> <target> [<source> <target> ...]``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

import anyio

from procfs import mounts

log = logging.getLogger(__name__)

#: A helper that has not finished by then is killed: its FUSE lookups are answered by the
#: shim's loop, the rest are local syscalls.
TIMEOUT = 10.0


def _fuse_mounts_at(pid: int, target: str) -> int:
    """How many FUSE mounts are stacked at ``target`` in ``pid``'s mount namespace.

    Read from the host's /proc before entering: inside, /proc is the container's procfs,
    where this helper (another pid namespace) has no /proc/self."""
    count = 0
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            if len(fields) > 4 and fields[4] == target and post.startswith("fuse"):
                count += 1
    return count


def rebind_here(pid: int, pairs: list[tuple[str, str]]) -> list[str]:
    """Helper-side work; returns the targets re-bound."""
    trees = [(mounts.open_tree_clone(src), target) for src, target in pairs]
    for fd, _ in trees:
        mounts.set_read_only(fd)
    stale_at = {target: _fuse_mounts_at(pid, target) for _, target in trees}
    ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    mounts.setns_mnt(ns)
    done = []
    for fd, target in trees:
        stale = stale_at[target]
        if not stale:
            continue  # never bound here (the user's own mount, or skipped): leave it
        for _ in range(stale):
            mounts.umount(target)
        mounts.attach(fd, target)
        done.append(target)
    return done


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


async def rebind(pid: int, files: Mapping[str, str]) -> list[str]:
    """Re-bind ``files`` (container target → host source) inside ``pid``'s mount namespace."""
    args = [str(pid)]
    for target, source in files.items():
        args += [source, target]
    with anyio.fail_after(TIMEOUT):
        result = await anyio.run_process(
            [sys.executable, "-m", "procfs.rebind", *args], check=False
        )
    if result.returncode != 0:
        raise OSError(result.stderr.decode(errors="replace").strip() or "rebind failed")
    return result.stdout.decode().split()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
