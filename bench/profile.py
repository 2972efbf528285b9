"""Where the shim's time goes: `python -m bench.profile [--tree DIR] [--runs N]`.

1. Import cost (`python -X importtime`, median of 7 fresh interpreters) of the start path
   (`shim.entry.cli` + `shim.entry.start`) and the serving path (`shim.entry.daemon`), against
   a bare interpreter: the top modules by self and by cumulative time.
2. The critical path of `ctr run --rm /bin/true`: every shim process of a private containerd
   marks its stages in one file (CONTAINERD_SHIM_LXCFS_TRACE, shim/trace.py), next to this
   process's `ctr run` / `ctr exited`; per-step medians over N runs, runc.v2 alternating.
3. cProfile of real shim processes: N more runs through a copy of the launcher that loads
   bench/profhook/profhook.py, which profiles `start`, `delete` and each serving process
   (forked by the zygote: from `main` on, as in production). Aggregated per action: profiled
   time per process and the top functions by cumulative time. cProfile inflates call-heavy
   code; use it for "where", the trace and the lifecycle benchmark for "how much".
4. cProfile of one serving process answering 2000 reads of /proc/meminfo: calls per read.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    HERE,
    LXCFS_RUNTIME,
    RUNC_RUNTIME,
    Env,
    bench_env,
    find_shim_bin_dir,
    production_like,
    progress,
    zygote_pids,
)
from shim import trace as shim_trace

PY = sys.executable


def _importtime(stmt: str, env: dict[str, str], reps: int = 7) -> dict[str, tuple[int, int]]:
    """module → (median self µs, median cumulative µs) over `reps` fresh interpreters."""
    acc: dict[str, list[tuple[int, int]]] = {}
    for _ in range(reps):
        r = subprocess.run(
            [PY, "-X", "importtime", "-c", stmt],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        for line in r.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            s, c, name = (x.strip() for x in line[len("import time:") :].split("|"))
            acc.setdefault(name.strip(), []).append((int(s), int(c)))
    return {
        k: (int(statistics.median(a for a, _ in v)), int(statistics.median(b for _, b in v)))
        for k, v in acc.items()
    }


def _wall(cmd: list[str], env: dict[str, str], reps: int = 7) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, timeout=60, check=True)
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1e3


def imports(tree: str | None) -> str:
    env = dict(os.environ)
    production_like(env, tree)
    lines = ["## Interpreter and import cost (median of 7, ms)"]
    for label, cmd in (
        ("bare interpreter (python -c pass)", [PY, "-c", "pass"]),
        ("bare, isolated (python -I -S -c pass)", [PY, "-I", "-S", "-c", "pass"]),
        (
            "start path (import shim.entry.cli, .start)",
            [PY, "-c", "import shim.entry.cli, shim.entry.start"],
        ),
        ("serving path (import shim.entry.daemon)", [PY, "-c", "import shim.entry.daemon"]),
    ):
        lines.append(f"  {label:48s} {_wall(cmd, env):7.1f} ms wall")
    for stmt in ("import shim.entry.cli, shim.entry.start", "import shim.entry.daemon"):
        t = _importtime(stmt, env)
        lines.append(f"\n### `{stmt}`: top cumulative (ms)")
        for name, (s, c) in sorted(t.items(), key=lambda kv: -kv[1][1])[:25]:
            lines.append(f"  {c / 1e3:7.1f} cum {s / 1e3:7.1f} self  {name}")
        lines.append(f"\n### `{stmt}`: top self (ms)")
        for name, (s, c) in sorted(t.items(), key=lambda kv: -kv[1][0])[:15]:
            lines.append(f"  {s / 1e3:7.1f} self {c / 1e3:7.1f} cum  {name}")
    return "\n".join(lines)


def _profiling_launcher(env: Env) -> Path:
    """A copy of the installed launcher that imports bench/profhook first (see there)."""
    real = Path(find_shim_bin_dir() or "", "containerd-shim-lxcfs-v2")
    text = real.read_text()
    anchor = "from shim.entry.cli import run\n"
    if anchor not in text:
        raise SystemExit(f"bench.profile: {real} is not our launcher (install.sh writes it)")
    hook = f"sys.path.insert(0, {str(HERE / 'profhook')!r})\nimport profhook  # bench.profile\n"
    launcher = env.workdir / "containerd-shim-lxcfs-v2"
    launcher.write_text(text.replace(anchor, hook + anchor))
    launcher.chmod(0o755)
    return launcher


def _stop_zygotes(launcher: Path) -> None:
    """Fork servers of `launcher` (the fingerprint includes the launcher path)."""
    for pid in zygote_pids(str(launcher)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def shim_profiles(env: Env, runs: int, save: str | None = None) -> str:
    prof_dir = env.workdir / "prof"
    prof_dir.mkdir()
    launcher = _profiling_launcher(env)
    env.compile_c(
        "shimtime.c",
        env.bindir / "containerd-shim-lxcfs-v2",
        f'-DREAL="{launcher}"',
        f'-DLOG="{env.start_log}"',
    )
    env.ctrd.stop()  # restart containerd: its shims get BENCH_PROF_DIR
    env.ctrd.env["BENCH_PROF_DIR"] = str(prof_dir)
    env.ctrd.start()
    try:
        for i in range(runs + 1):  # the first one launches the fork server: not counted
            r = env.ctrd.run(LXCFS_RUNTIME, env.rootfs, env.new_id("prof"), "/bin/true")
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            if i == 0:
                time.sleep(1.5)  # the zygote warms up
                for f in prof_dir.glob("*.prof"):
                    f.unlink()
            progress(f"profile run {i}/{runs}")
        env.leaks()  # waits for the shims to exit (and dump their profiles)
        if save:
            shutil.copytree(prof_dir, save, dirs_exist_ok=True)
        out = ["## cProfile of shim processes (per process; ms)"]
        for action in ("start", "serve", "delete"):
            files = sorted(glob.glob(str(prof_dir / f"{action}-*.prof")))
            if not files:
                out.append(f"\n### {action}: no profile written")
                continue
            st = pstats.Stats(*files, stream=io.StringIO())
            total = st.total_tt  # type: ignore[attr-defined]
            out.append(
                f"\n### {action}: {len(files)} processes, {total * 1e3 / len(files):.1f} ms "
                "profiled per process; top cumulative (times summed over processes):"
            )
            buf = io.StringIO()
            st.stream = buf  # type: ignore[attr-defined]
            st.sort_stats("cumulative").print_stats(30)
            body = buf.getvalue().splitlines()
            start = next((i for i, x in enumerate(body) if "ncalls" in x), 0)
            out += ["  " + x for x in body[start:] if x.strip()]
        out.append(view_reads(env, prof_dir))
        return "\n".join(out)
    finally:
        _stop_zygotes(launcher)


def critical_path(env: Env, runs: int) -> str:
    """Where the wall time of `ctr run --rm /bin/true` goes, step by step, ms (medians).

    containerd (hence every shim process) gets CONTAINERD_SHIM_LXCFS_TRACE (shim/trace.py);
    this process marks `ctr run` / `ctr exited` in the same file; for the reference, the same
    number of plain runc.v2 runs, alternating.
    """
    trace_file = env.workdir / "trace.log"
    # a fork server started before without the variable would leave its marks out
    _stop_zygotes(Path(find_shim_bin_dir() or "", "containerd-shim-lxcfs-v2"))
    env.ctrd.stop()
    env.ctrd.env[shim_trace.ENV] = str(trace_file)
    env.ctrd.start()
    os.environ[shim_trace.ENV] = str(trace_file)
    ref: list[float] = []
    try:
        for i in range(runs + 2):  # two warm-ups: the fork server
            if i == 2:
                trace_file.unlink(missing_ok=True)
            cid = env.new_id("trace")
            shim_trace.mark(f"ctr run {cid}")
            r = env.ctrd.run(LXCFS_RUNTIME, env.rootfs, cid, "/bin/true")
            shim_trace.mark("ctr exited")
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            t = time.perf_counter()
            r = env.ctrd.run(RUNC_RUNTIME, env.rootfs, env.new_id("trace-ref"), "/bin/true")
            if i >= 2:
                ref.append((time.perf_counter() - t) * 1e3)
            time.sleep(0.3)  # let the shim go: its exit is not on ctr's path
            progress(f"trace run {i - 1}/{runs}" if i >= 2 else "trace warm-up")
    finally:
        del os.environ[shim_trace.ENV]
        env.ctrd.stop()
        del env.ctrd.env[shim_trace.ENV]
        env.ctrd.start()
    return format_trace(trace_file.read_text(), statistics.median(ref))


def format_trace(text: str, ref_ms: float) -> str:
    """Per-step medians of a trace with `ctr run` ... `ctr exited` runs (see critical_path)."""
    runs: list[list[tuple[float, str]]] = []
    for line in text.splitlines():
        ns, _pid, label = line.split(" ", 2)
        if label.startswith("ctr run"):
            runs.append([])
            label = "ctr run"
        if runs:
            runs[-1].append((int(ns) / 1e6, label))
    steps: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        t0, prev = run[0][0], run[0][0]
        seen: dict[str, int] = {}
        for t, label in run[1:]:
            seen[label] = seen.get(label, 0) + 1
            key = label if seen[label] == 1 else f"{label} #{seen[label]}"
            steps.setdefault(key, []).append((t - t0, t - prev))
            prev = t
    rows = sorted(steps.items(), key=lambda kv: statistics.median(a for a, _ in kv[1]))
    total = statistics.median(a for a, _ in steps.get("ctr exited", [(0.0, 0.0)]))
    lines = [
        f"## critical path of `ctr run --rm /bin/true`, {len(runs)} runs (median ms): "
        f"{total:.1f} ms vs {ref_ms:.1f} ms for runc.v2 in the same loop",
        f"  {'at':>7} {'step':>7}  mark (shim/trace.py; pid changes = another process)",
    ]
    for key, v in rows:
        if len(v) * 2 < len(runs):
            continue  # marks of background work that ends after some runs' ctr exited
        at = statistics.median(a for a, _ in v)
        step = statistics.median(d for _, d in v)
        lines.append(f"  {at:7.1f} {step:+7.1f}  {key}")
    return "\n".join(lines)


def view_reads(env: Env, prof_dir: Path, reads: int = 2000) -> str:
    """Profile one shim serving `reads` open+read+close of /proc/meminfo: calls per read."""
    from bench.view import start_container, vread

    vdir = prof_dir / "view"
    vdir.mkdir()
    env.ctrd.env["BENCH_PROF_DIR"] = str(vdir)
    env.ctrd.stop()
    env.ctrd.start()
    cid, pid = start_container(env, LXCFS_RUNTIME, "prof-view")
    try:
        ns = vread(pid, "/proc/meminfo", reads)[0]
    finally:
        env.remove_many([cid])
    env.leaks()
    files = glob.glob(str(vdir / "serve-*.prof"))
    if not files:
        return "\n## view reads: no profile written"
    st = pstats.Stats(*files, stream=io.StringIO())
    lines = [
        f"\n## view: {reads} x open+read+close of /proc/meminfo, {ns / 1e3:.0f} µs each under "
        "cProfile; calls and profiled µs per read of the busiest functions (by tottime):"
    ]
    rows = []
    for (path, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if nc >= reads // 2:
            rows.append((tt, nc, ct, f"{Path(path).name}:{line}({fn})"))
    for tt, nc, ct, where in sorted(rows, reverse=True)[:30]:
        lines.append(
            f"  {nc / reads:5.2f} calls  {tt * 1e6 / reads:7.1f} self  "
            f"{ct * 1e6 / reads:7.1f} cum  {where}"
        )
    lines.append("  FUSE handlers and view code (procfs/, pyfuse3), by cumulative µs per read:")
    own = [
        (ct, nc, tt, f"{Path(path).parent.name}/{Path(path).name}:{line}({fn})")
        for (path, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items()  # type: ignore[attr-defined]
        if nc >= reads // 2 and ("procfs" in path or "pyfuse3" in path)
    ]
    for ct, nc, tt, where in sorted(own, reverse=True)[:20]:
        lines.append(
            f"  {nc / reads:5.2f} calls  {tt * 1e6 / reads:7.1f} self  "
            f"{ct * 1e6 / reads:7.1f} cum  {where}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--tree", help="shim source tree (as for python -m bench)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--skip-imports", action="store_true")
    p.add_argument("--save", metavar="DIR", help="also copy the .prof files here (pstats)")
    a = p.parse_args(argv)
    if not a.skip_imports:
        print(imports(a.tree), flush=True)
    with bench_env(quick=True, tree=a.tree) as env:
        print(critical_path(env, a.runs), flush=True)
        print(shim_profiles(env, a.runs, a.save))
    return 0


if __name__ == "__main__":
    sys.exit(main())
