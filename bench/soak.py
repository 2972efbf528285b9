"""Soak: many containers through create/start/exec/kill/delete with ids reused; nothing grows.

`python -m bench --only soak`: 500 containers (50 with --quick), 4 at a time, each worker
cycling over two ids of its own (so every id is reused at once, many times), on containerd
1.6 (the bench's containerd) and, when it is built, containerd 2.4. Per container: `ctr run -d`
(256 MiB, sleep), `ctr task exec` reading /proc/meminfo (MemTotal must be the limit),
`ctr task kill -s SIGKILL`, `ctr task rm`, `ctr container rm`.

Counted before (after a warm-up that starts the zygote) and after: our shim processes,
the zygote family (zygote + spare), their fds and threads, the zygote's RSS, containerd's
fds and threads, mounts and FUSE connections of ours, shim sockets, state dirs and runc
state of our ids. The table shows after vs before ("ratio" 1.00x = no growth).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import (
    LIMIT_BYTES,
    LIMITS,
    LXCFS_RUNTIME,
    Env,
    Row,
    fuse_connections,
    harness,
    peers,
    progress,
    zygote_pids,
)

WORKERS = 4
PEER_2X = peers.CONTAINERD_2.bin_dir


def _status(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def zygote_socket_for(ctrd: harness.PrivateContainerd, launcher: str) -> str:
    """The socket of the zygote that serves `ctrd`'s shims: this code as `launcher` runs it,
    in containerd's context (shim/identity.py), not an older zygote of another code."""
    import sys

    from shim import identity

    saved = sys.argv[0]
    sys.argv[0] = launcher  # the launcher's interpreter is the venv's, like ours
    try:
        code = identity.code_fingerprint()
    finally:
        sys.argv[0] = saved
    return os.path.join(
        identity.STATE_DIR,
        f"{identity.ZYGOTE_PREFIX}{code}-{identity.process_context(ctrd.proc.pid)}.sock",
    )


def counters(
    ctrd: harness.PrivateContainerd, ids: list[str], launcher: str, fuse_before: set[str]
) -> dict[str, int]:
    """What must not grow: see the module docstring."""
    path = zygote_socket_for(ctrd, launcher)
    family = [p for p in zygote_pids(launcher) if path in harness.process_cmdlines().get(p, [])]
    zygote = next((p for p in family if os.getsid(p) == p), None)
    hashes = [harness.shim_hash(ctrd.address, ctrd.namespace, cid) for cid in ids]
    ours = (str(ctrd.tmpdir) + "/", str(harness.LXCFS_STATE_DIR) + "/")
    mounts = [
        m for m in harness.mount_points() if m.startswith(ours[0]) or any(h in m for h in hashes)
    ]
    mounted = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.startswith("fuse"):
            mounted.add(left.split(" ")[2].split(":")[1])
    runc_root = Path("/run/containerd/runc", ctrd.namespace)
    return {
        "shim processes": len(ctrd.shim_processes()),
        "zygote + spare processes": len(family),
        "zygote + spare fds": sum(_fds(p) for p in family),
        "zygote + spare threads": sum(_status(p, "Threads") for p in family),
        "zygote RSS (kB)": _status(zygote, "VmRSS") if zygote else 0,
        "containerd fds": _fds(ctrd.proc.pid),
        "containerd threads": _status(ctrd.proc.pid, "Threads"),
        "mounts of ours": len(mounts),
        "FUSE connections without a mount": len(fuse_connections() - fuse_before - mounted),
        "shim sockets": sum((harness.SHIM_SOCKET_DIR / h).exists() for h in hashes),
        "state dirs": sum((harness.LXCFS_STATE_DIR / h).exists() for h in hashes),
        "runc state dirs": len(os.listdir(runc_root)) if runc_root.is_dir() else 0,
    }


def _one(ctrd: harness.PrivateContainerd, rootfs: Path, cid: str) -> str | None:
    """One container's whole life; None, or what went wrong."""
    r = ctrd.run_detached(
        LXCFS_RUNTIME, rootfs, cid, "/bin/sleep", "100000", ctr_args=LIMITS, timeout=120
    )
    if r.returncode != 0:
        return f"run {cid}: {r.stderr.strip()[-200:]}"
    try:
        r = ctrd.ctr(
            "task", "exec", "--exec-id", "soak", cid, "/bin/head", "-1", "/proc/meminfo", timeout=60
        )
        want = f"{LIMIT_BYTES // 1024} kB"
        if r.returncode != 0 or want not in r.stdout:
            return f"exec {cid}: {r.returncode} {r.stdout.strip()} {r.stderr.strip()[-200:]}"
        r = ctrd.ctr("task", "kill", "-s", "SIGKILL", cid, timeout=60)
        if r.returncode != 0:
            return f"kill {cid}: {r.stderr.strip()[-200:]}"
        if not ctrd.wait_status(cid, "STOPPED", 30):
            return f"{cid} never STOPPED"
        if ctrd.delete_task(cid, timeout=60) != 137:
            return f"task rm {cid} did not report 137"
        r = ctrd.ctr("container", "rm", cid, timeout=60)
        if r.returncode != 0:
            return f"container rm {cid}: {r.stderr.strip()[-200:]}"
        return None
    finally:
        if ctrd.task_status(cid) is not None or cid in ctrd.containers():
            ctrd.force_remove(cid)


def soak(
    ctrd: harness.PrivateContainerd, rootfs: Path, n: int, launcher: str, workers: int = WORKERS
) -> tuple[dict[str, int], dict[str, int], list[str], float]:
    """(before, after, failures, seconds) for `n` containers, `workers` at a time."""
    fuse_before = fuse_connections()
    ids = [ctrd.new_id(f"soak{w}-{k}") for w in range(workers) for k in range(2)]
    warm = ids[0]
    for _ in range(3):  # the first start launches the zygote; later ones are forked
        _one(ctrd, rootfs, warm)
        time.sleep(1)
    harness.wait_until(lambda: not ctrd.shim_processes(), 15, 0.2)
    time.sleep(0.5)  # the zygote's next spare
    before = counters(ctrd, ids, launcher, fuse_before)
    failures: list[str] = []
    t0 = time.monotonic()

    def worker(w: int) -> list[str]:
        out = []
        mine = ids[2 * w : 2 * w + 2]
        for k in range(w, n, workers):
            problem = _one(ctrd, rootfs, mine[k // workers % 2])
            if problem:
                out.append(problem)
            if k % 100 == 0:
                progress(f"soak: {k}/{n}")
        return out

    with ThreadPoolExecutor(workers) as pool:
        for found in pool.map(worker, range(workers)):
            failures += found
    took = time.monotonic() - t0
    harness.wait_until(lambda: not ctrd.shim_processes(), 15, 0.2)
    time.sleep(0.5)
    after = counters(ctrd, ids, launcher, fuse_before)
    return before, after, failures, took


def bench(env: Env) -> list[Row]:
    n = 50 if env.quick else 500
    launcher = str(Path(harness.find_shim_bin_dir() or "", "containerd-shim-lxcfs-v2"))
    runs = [("1.6", env.ctrd)]
    peer = None
    if os.access(PEER_2X / "containerd", os.X_OK):
        peer = harness.PrivateContainerd(
            namespace=f"soak-{os.getpid()}",
            containerd=str(PEER_2X / "containerd"),
            ctr=str(PEER_2X / "ctr"),
        )
        peer.env = dict(env.ctrd.env)
        runs.append(("2.4", peer))
    rows: list[Row] = []
    try:
        for version, ctrd in runs:
            if ctrd is peer:
                ctrd.start()
            progress(f"soak on containerd {version}: {n} containers, {WORKERS} at a time")
            before, after, failures, took = soak(ctrd, env.rootfs, n, launcher)
            for problem in failures[:5]:
                progress(f"soak {version}: {problem}")
            for i, (name, was) in enumerate(before.items()):
                now = after[name]
                note = ""
                if i == 0:
                    note = f"{n} containers, ids reused, {took:.0f} s, {len(failures)} failed"
                elif name.startswith("containerd "):
                    note = "containerd's own (Go runtime threads come and go)"
                rows.append(
                    Row(
                        "soak",
                        f"containerd {version}: {name}",
                        float(now),
                        float(was),
                        "count" if "kB" not in name else "kB",
                        "no growth",
                        note,
                        ratio=(now / was) if was else (1.0 if now == was else None),
                    )
                )
    finally:
        if peer is not None:
            peer.cleanup_all()
            peer.stop()
            peer.remove_tmpdir()
    return rows
