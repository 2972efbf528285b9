"""Density: N containers started 8 at a time, every one's MemTotal checked, then all stopped.

Wall time of the whole cycle for our runtime vs runc.v2 doing the same, runtimes alternating
cycle by cycle (A B B A ...). Each container is `ctr run -d` (256 MiB, 1 CPU, busybox sleep);
MemTotal is read through /proc/<init pid>/root/proc/meminfo -- the container's own mount tree,
so it goes through the view bound into it -- and must be the limit for io.containerd.lxcfs.v2
and the host's for runc.v2 (proof that the check can fail). Stop is `ctr task rm -f` plus
`ctr container rm`, 8 at a time. After each cycle nothing may be left: no shim process, shim
socket, mount, state dir or FUSE connection (the runner's leak check runs after the benchmark;
this module also checks after every cycle so a leak is attributed to its runtime).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import (
    LIMIT_BYTES,
    LIMITS,
    LXCFS_RUNTIME,
    RUNC_RUNTIME,
    SHORT,
    Env,
    Row,
    harness,
    median,
    progress,
)

WORKERS = 8


def cycle(env: Env, runtime: str, n: int) -> tuple[dict[str, float], list[str], list[str]]:
    """One start/check/stop cycle: (phase seconds, wrong MemTotal reports, leaks)."""
    want = LIMIT_BYTES // 1024 if runtime == LXCFS_RUNTIME else harness.host_meminfo()["MemTotal"]
    cids = [env.new_id(f"dn-{SHORT[runtime]}") for _ in range(n)]
    wrong: list[str] = []
    phases: dict[str, float] = {}

    def start(cid: str) -> None:
        r = env.ctrd.run_detached(
            runtime, env.rootfs, cid, "/bin/sleep", "100000", ctr_args=LIMITS, timeout=120
        )
        if r.returncode != 0:
            raise RuntimeError(f"ctr run -d {runtime} {cid}: {r.stderr.strip()}")

    def check(pid: int) -> str | None:
        try:
            with open(f"/proc/{pid}/root/proc/meminfo") as f:
                got = harness.parse_meminfo(f.read()).get("MemTotal")
        except OSError as e:
            return f"pid {pid}: {e}"
        return None if got == want else f"pid {pid}: MemTotal {got} kB, want {want} kB"

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(start, cids))
        t1 = time.monotonic()
        pids = [pid for cid, (pid, _) in env.ctrd.tasks().items() if cid in set(cids)]
        with ThreadPoolExecutor(WORKERS) as pool:
            wrong = [w for w in pool.map(check, pids) if w]
        if len(pids) != n:
            wrong.append(f"{n - len(pids)} containers not running")
        t2 = time.monotonic()
    finally:
        env.remove_many(cids, WORKERS)
    t3 = time.monotonic()
    phases = {"start": t1 - t0, "check": t2 - t1, "stop": t3 - t2, "total": t3 - t0}
    leaks = env.leaks(timeout=30)
    return phases, wrong, leaks


def bench(env: Env) -> list[Row]:
    n = 10 if env.quick else 100
    cycles = 1 if env.quick else 2  # pairs; each is A B then B A
    got: dict[str, list[dict[str, float]]] = {LXCFS_RUNTIME: [], RUNC_RUNTIME: []}
    wrong: dict[str, list[str]] = {LXCFS_RUNTIME: [], RUNC_RUNTIME: []}
    leaks: dict[str, list[str]] = {LXCFS_RUNTIME: [], RUNC_RUNTIME: []}
    for i in range(cycles):
        order = (LXCFS_RUNTIME, RUNC_RUNTIME) if i % 2 == 0 else (RUNC_RUNTIME, LXCFS_RUNTIME)
        for rt in order:
            progress(f"density cycle {i + 1}/{cycles}: {n} x {SHORT[rt]}, {WORKERS} at a time")
            phases, w, lk = cycle(env, rt, n)
            got[rt].append(phases)
            wrong[rt] += w
            leaks[rt] += lk
            progress(
                f"density {SHORT[rt]}: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
                + (f"; {len(w)} wrong MemTotal" if w else "")
                + (f"; LEAKS {lk}" if lk else "")
            )
    rows = []
    for phase in ("total", "start", "check", "stop"):
        ours = [p[phase] for p in got[LXCFS_RUNTIME]]
        ref = [p[phase] for p in got[RUNC_RUNTIME]]
        note = ""
        if phase == "total":
            note = f"{cycles} cycle(s) each; MemTotal wrong: {len(wrong[LXCFS_RUNTIME])}"
            note += f"/{len(wrong[RUNC_RUNTIME])}; leaks: {len(leaks[LXCFS_RUNTIME])}"
            note += f"/{len(leaks[RUNC_RUNTIME])} (ours/runc)"
        rows.append(
            Row(
                "density",
                f"{n} containers: {phase}" if phase == "total" else f"  {phase}",
                median(ours),
                median(ref),
                "s",
                "<= 1.3x" if phase == "total" else "",
                note,
                ratio=median([a / b for a, b in zip(ours, ref, strict=True)]),
            )
        )
    for rt in (LXCFS_RUNTIME, RUNC_RUNTIME):
        for w in wrong[rt][:5] + leaks[rt][:5]:
            progress(f"density {SHORT[rt]}: {w}")
    return rows
