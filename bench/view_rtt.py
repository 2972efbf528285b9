"""FUSE requests per open+read+close of each view file, and what each open costs the shim.

``python -m bench.view_rtt [--opens N] [--same-cpu]`` (root, no containerd): mounts a
:class:`procfs.view.View` in this process on a temporary directory, registers one container
with no cgroup (every file renders the host's content: the request pattern is the same, the
renderers are cheaper), and runs bench/reader.c (``vread``) over each file in a subprocess.
Counts the handler calls per open (GETATTR, OPEN, READ, RELEASE, LOOKUP, FLUSH...), the wall
time per open+read+close (median of 5 loops) and this process's CPU time per open (user =
Python, pyfuse3 and libfuse; system = the /dev/fuse reads and replies and the event loop).
``--same-cpu`` pins the shim and the reader to one CPU: no cross-CPU wake-ups, so the wall time
is the two sides' CPU time added up.

It answers "how many round trips, and how much of each is ours" without a container; the
in-container comparison with lxcfs is bench/view.py.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from bench.common import HERE
from procfs import view as view_mod

FILES = (
    "/proc/meminfo",
    "/proc/loadavg",
    "/proc/uptime",
    "/sys/devices/system/cpu/online",
    "/proc/stat",
    "/proc/swaps",
)
OPS = ("lookup", "getattr", "open", "read", "flush", "release", "access", "opendir")
LOOPS = 5

counts: collections.Counter[str] = collections.Counter()


def _counting(name: str, handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(handler)
    async def counted(*args: Any) -> Any:
        counts[name] += 1
        return await handler(*args)

    return counted


def _count_requests() -> None:
    """Wrap the view's handlers (class attributes) with counters."""
    ops = view_mod._Operations
    for name in OPS:
        setattr(ops, name, _counting(name, getattr(ops, name)))


async def _measure(files: dict[str, str], vread: Path, opens: int) -> list[str]:
    lines = []
    for target, src in files.items():
        await anyio.run_process([str(vread), src, "200"])  # warm the renderings and caches
        counts.clear()
        t0 = os.times()
        walls = []
        for _ in range(LOOPS):
            r = await anyio.run_process([str(vread), src, str(opens)])
            walls.append(int(r.stdout.split()[0]) / 1e3)
        t1 = os.times()
        n = LOOPS * opens
        per = " ".join(f"{k.upper()} {c / n:.2f}" for k, c in sorted(counts.items()) if c)
        lines.append(
            f"{target:32s} {statistics.median(walls):6.1f} µs/open  shim CPU "
            f"{(t1.user - t0.user + t1.system - t0.system) / n * 1e6:5.1f} µs "
            f"(user {(t1.user - t0.user) / n * 1e6:4.1f})  requests/open: {per}"
        )
    return lines


async def _main(opens: int, vread: Path, workdir: Path) -> list[str]:
    v = view_mod.View(workdir / "mnt")
    async with anyio.create_task_group() as tg:
        await tg.start(v.run)
        try:
            files = v.add("rtt", None, FILES)
            return await _measure(files, vread, opens)
        finally:
            tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--opens", type=int, default=2000, help="open+read+close per loop")
    p.add_argument("--same-cpu", action="store_true", help="pin shim and reader to one CPU")
    args = p.parse_args(argv)
    if args.same_cpu:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # the reader inherits it
    _count_requests()
    with tempfile.TemporaryDirectory(prefix="view-rtt-") as tmp:
        vread = Path(tmp) / "vread"
        subprocess.run(
            ["gcc", "-static", "-O2", "-o", str(vread), str(HERE / "reader.c")],
            check=True,
            timeout=120,
        )
        for line in anyio.run(_main, args.opens, vread, Path(tmp)):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
