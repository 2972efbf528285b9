"""Shared bench plumbing: the private containerd, the rootfs, compiled helpers, stats, cleanup.

Builds on tests/harness.py (private containerd, busybox rootfs, leak checks) instead of
duplicating it. Every benchmark takes a :class:`Env` and must leave nothing behind: the
``bench_env`` context manager tears everything down on normal exit, exceptions and Ctrl-C /
SIGTERM (turned into KeyboardInterrupt so ``finally`` blocks run).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

import harness  # noqa: E402
import peer_builds as peers  # noqa: E402,F401  (re-exported: the pinned peers' paths)
from harness import (  # noqa: E402
    LXCFS_RUNTIME,
    RUNC_RUNTIME,
    PrivateContainerd,
    build_busybox_rootfs,
    find_shim_bin_dir,
)

__all__ = ["LXCFS_RUNTIME", "RUNC_RUNTIME", "Env", "Row", "bench_env", "harness"]

MiB = 1024 * 1024
#: Memory limit of every benchmark container; the view must show it as MemTotal.
LIMIT_BYTES = 256 * MiB
LIMITS = ("--memory-limit", str(LIMIT_BYTES), "--cpus", "1")
SHORT = {LXCFS_RUNTIME: "lxcfs", RUNC_RUNTIME: "runc"}


# --------------------------------------------------------------------------- output


def progress(msg: str) -> None:
    """One line of progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One table line: ours vs the reference measured in the same run."""

    bench: str
    metric: str
    ours: float | None
    ref: float | None
    unit: str
    target: str = ""
    note: str = ""
    ratio: float | None = None  # median of paired ratios when available, else ours/ref

    def __post_init__(self) -> None:
        if self.ratio is None and self.ours is not None and self.ref:
            self.ratio = self.ours / self.ref


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit in ("ms", "MB", "s"):
        return f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    if unit == "µs":
        return f"{v:.1f}"
    return f"{v:.3g}"


def table(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured markdown table (pastes straight into the README)."""
    head = ["bench", "metric", "lxcfs shim", "reference", "unit", "ratio", "target", "note"]
    body = [
        [
            r.bench,
            r.metric,
            fmt(r.ours, r.unit),
            fmt(r.ref, r.unit),
            r.unit,
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.target,
            r.note,
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        lines.append("| " + " | ".join(x.ljust(w) for x, w in zip(b, widths, strict=True)) + " |")
    return "\n".join(lines)


def median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------- environment


@dataclass
class Env:
    """What every benchmark gets: a containerd whose shims are wrapped by shimtime, a rootfs."""

    ctrd: PrivateContainerd
    rootfs: Path
    workdir: Path
    bindir: Path  # shimtime wrappers (first on containerd's PATH)
    start_log: Path  # shimtime output: "<id> <t0> <t1> <status>" per `start`
    quick: bool
    fuse_baseline: set[str] = field(default_factory=set)

    def compile_c(self, source: str, out: Path, *defines: str) -> Path:
        """`gcc -static -O2` a helper from bench/ (static: runs in the busybox rootfs too)."""
        cmd = ["gcc", "-static", "-O2", "-Wall", *defines, "-o", str(out), str(HERE / source)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
        return out

    def new_id(self, hint: str) -> str:
        return self.ctrd.new_id(hint)

    def init_pid(self, cid: str) -> int:
        return self.ctrd.tasks()[cid][0]

    def remove_many(self, cids: Sequence[str], workers: int = 8) -> None:
        """`ctr task rm -f` + `ctr container rm`, `workers` at a time (best effort)."""
        from concurrent.futures import ThreadPoolExecutor

        def rm(cid: str) -> None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.ctrd.ctr("task", "rm", "-f", cid, timeout=60)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.ctrd.ctr("container", "rm", cid, timeout=60)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(rm, cids))

    def leaks(self, timeout: float = 15.0) -> list[str]:
        """Everything our containers left: shims, sockets, mounts, state dirs, FUSE connections.

        Shims exit asynchronously after Shutdown, so this polls up to `timeout` seconds.
        """
        problems: list[str] = []

        def clean() -> bool:
            nonlocal problems
            problems = []
            for pid, cmd in self.ctrd.shim_processes():
                problems.append(f"shim process {pid}: {cmd[:120]}")
            for cid in self.ctrd.issued_ids:
                problems += [p for p in self.ctrd.leaks_for(cid) if "process" not in p]
            problems += self.fuse_leaks()
            return not problems

        harness.wait_until(clean, timeout, 0.25)
        return problems

    def fuse_leaks(self) -> list[str]:
        """FUSE connections born during the bench that are still open and are ours or orphaned.

        Other engineers' tests may mount FUSE concurrently: a new connection still mounted
        somewhere outside our paths is not counted.
        """
        ours = [str(self.workdir), str(self.ctrd.tmpdir), str(harness.LXCFS_STATE_DIR)]
        mounted: dict[str, str] = {}
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            f = line.split(" ")
            mounted[f[2].split(":")[1] if f[2].startswith("0:") else ""] = f[4]
        out = []
        for conn in sorted(fuse_connections() - self.fuse_baseline):
            mp = mounted.get(conn)
            if mp is None or any(mp.startswith(p) for p in ours):
                out.append(f"FUSE connection {conn} ({mp or 'not mounted'})")
        return out


def zygote_pids(launcher: str = "containerd-shim-lxcfs-v2") -> list[int]:
    """The lxcfs shim's fork servers (and their spares) whose command line names `launcher`."""
    return [
        pid
        for pid, argv in harness.process_cmdlines().items()
        if "-zygote" in argv and launcher in " ".join(argv)
    ]


def fuse_connections() -> set[str]:
    try:
        return set(os.listdir("/sys/fs/fuse/connections"))
    except OSError:
        return set()


def shim_code_dirs(tree: str | None) -> list[Path]:
    """Where the lxcfs shim's own packages are loaded from (`tree` or the installed ones)."""
    if tree:
        root = Path(tree).resolve()
        return [root / p for p in ("shim", "procfs", "protos")]
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import shim, procfs, protos; "
            "print(*(m.__path__[0] for m in (shim, procfs, protos)), sep=chr(10))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [Path(x) for x in r.stdout.split()]


def production_like(env: dict[str, str], tree: str | None = None) -> None:
    """Make containerd's -- hence the shims' -- environment like a node's, in place.

    Our sessions export PYTHONDONTWRITEBYTECODE=1: a shim inheriting it recompiles every
    module from source on each start (measured: ~60 ms of `compile` per serving process).
    On a node containerd runs from systemd without it, and pip installs byte-compiled, so
    drop PYTHON* variables and byte-compile the shim's packages once before measuring.
    """
    for k in [k for k in env if k.startswith("PYTHON")]:
        del env[k]
    if tree:
        env["PYTHONPATH"] = str(Path(tree).resolve())
        progress(f"lxcfs shim code from {env['PYTHONPATH']}")
    dirs = [str(d) for d in shim_code_dirs(tree)]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *dirs],
        capture_output=True,
        timeout=300,
        check=False,
    )


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def bench_env(quick: bool = False, tree: str | None = None) -> Iterator[Env]:
    """Private containerd (shims wrapped by shimtime), busybox rootfs; all removed on exit.

    `tree`: run the lxcfs shim from this source tree (e.g. a `git worktree` of one commit) by
    putting it on containerd's -- hence the shims' -- PYTHONPATH, ahead of the editable install.
    Others edit the working tree while benchmarks run; a pinned tree keeps a run coherent.
    """
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (containerd, runc, FUSE)")
    old = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    ctrd: PrivateContainerd | None = None
    try:
        progress(f"workdir {workdir}: building busybox rootfs and helpers")
        rootfs = build_busybox_rootfs(workdir / "rootfs")
        bindir = workdir / "bin"
        bindir.mkdir()
        start_log = workdir / "shim-start.log"
        real_lxcfs = find_shim_bin_dir()
        real_runc = shutil.which("containerd-shim-runc-v2")
        if not real_lxcfs or not real_runc:
            raise SystemExit("bench: containerd-shim-lxcfs-v2 / containerd-shim-runc-v2 missing")
        ctrd = PrivateContainerd(namespace=f"bench-{os.getpid()}")
        env = Env(ctrd, rootfs, workdir, bindir, start_log, quick)
        for name, real in (
            ("containerd-shim-lxcfs-v2", f"{real_lxcfs}/containerd-shim-lxcfs-v2"),
            ("containerd-shim-runc-v2", real_runc),
        ):
            env.compile_c("shimtime.c", bindir / name, f'-DREAL="{real}"', f'-DLOG="{start_log}"')
        env.compile_c("reader.c", rootfs / "bin" / "vread")
        env.compile_c("poller.c", rootfs / "bin" / "vpoll")
        ctrd.env["PATH"] = f"{bindir}{os.pathsep}{ctrd.env['PATH']}"
        production_like(ctrd.env, tree)
        env.fuse_baseline = fuse_connections()
        progress(f"starting private containerd in {ctrd.tmpdir}")
        ctrd.start()
        yield env
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up even if asked twice
        try:
            if ctrd is not None:
                progress("cleaning up: containers, containerd, mounts")
                with contextlib.suppress(Exception):
                    ctrd.cleanup_all()
                ctrd.stop()
                if ctrd.shim_processes():
                    time.sleep(2)
                    ctrd.kill_leftover_shims()
                ctrd.remove_tmpdir()
        finally:
            prefix = str(workdir) + "/"
            for mp in sorted(
                (m for m in harness.mount_points() if m.startswith(prefix)), reverse=True
            ):
                subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10, check=False)
            shutil.rmtree(workdir, ignore_errors=True)
            signal.signal(signal.SIGTERM, old)
