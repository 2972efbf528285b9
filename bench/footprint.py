"""Footprint: RSS and PSS of the shim processes per container at 1, 10 and 50 containers.

For each runtime in turn (order alternates between levels is pointless here: memory does not
drift with CPU contention), busybox `sleep` containers are started detached up to each level;
the shims serving our private containerd whose command line names the runtime are summed from
/proc/<pid>/smaps_rollup (Rss, Pss) plus their descendants (none persist for either shim
today, but a forking design must pay for its children), divided by the number of containers.
PSS is what a node really pays: pages shared between shims (a zygote's copy-on-write image, the
interpreter's mapped .so files) are split among them.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import (
    LIMITS,
    LXCFS_RUNTIME,
    RUNC_RUNTIME,
    SHORT,
    Env,
    Row,
    progress,
    zygote_pids,
)

#: Binary name fragment of each runtime's shim on its command line.
_MARK = {LXCFS_RUNTIME: "containerd-shim-lxcfs-v2", RUNC_RUNTIME: "containerd-shim-runc-v2"}


def rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) in kB of one process; (0, 0) if it is gone."""
    rss = pss = 0
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def shim_pids(env: Env, runtime: str) -> list[int]:
    """Shims of `runtime` serving our containerd (and the lxcfs zygote), plus their
    non-container descendants."""
    roots = [pid for pid, cmd in env.ctrd.shim_processes() if _MARK[runtime] in cmd]
    if runtime == LXCFS_RUNTIME:
        roots += zygote_pids()  # shared by every pod of the node: their cost counts
    containers = {pid for pid, _ in env.ctrd.tasks().values()}
    kids = _children()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in containers:
            continue  # the container's own processes are not the shim's cost
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def measure(env: Env, runtime: str) -> tuple[float, float, int]:
    """(RSS MB, PSS MB) summed over the runtime's shim processes, and how many there are."""
    pids = shim_pids(env, runtime)
    tot = [rollup(p) for p in pids]
    return sum(r for r, _ in tot) / 1024, sum(p for _, p in tot) / 1024, len(pids)


def bench(env: Env) -> list[Row]:
    levels = (1, 3) if env.quick else (1, 10, 50)
    per: dict[tuple[str, int], tuple[float, float, int]] = {}
    for runtime in (LXCFS_RUNTIME, RUNC_RUNTIME):
        cids: list[str] = []
        try:
            for level in levels:
                new = [env.new_id(f"fp-{SHORT[runtime]}") for _ in range(level - len(cids))]
                cids += new

                def run(cid: str, runtime: str = runtime) -> None:
                    r = env.ctrd.run_detached(
                        runtime, env.rootfs, cid, "/bin/sleep", "100000", ctr_args=LIMITS
                    )
                    if r.returncode != 0:
                        raise RuntimeError(f"ctr run -d {runtime}: {r.stderr.strip()}")

                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(run, new))
                time.sleep(1.0)  # let the newest shims finish serving Start
                per[(runtime, level)] = measure(env, runtime)
                rss, pss, n = per[(runtime, level)]
                progress(
                    f"footprint {SHORT[runtime]} x{level}: {n} shim processes, "
                    f"RSS {rss:.1f} MB, PSS {pss:.1f} MB"
                )
        finally:
            progress(f"footprint: removing {len(cids)} {SHORT[runtime]} containers")
            env.remove_many(cids)
    rows = []
    for level in levels:
        o, r = per[(LXCFS_RUNTIME, level)], per[(RUNC_RUNTIME, level)]
        note = f"{o[2]} vs {r[2]} shim processes"
        for i, what in ((0, "RSS"), (1, "PSS")):
            rows.append(
                Row(
                    "footprint",
                    f"shim {what} per container, {level} running",
                    o[i] / level,
                    r[i] / level,
                    "MB",
                    "<= 1.0x" if what == "PSS" else "",
                    note,
                )
            )
    return rows
