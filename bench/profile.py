"""Where the shim's time goes: `python -m bench.profile [--tree DIR] [--runs N]`.

1. Import cost (`python -X importtime`, median of 7 fresh interpreters) of the start path
   (`shim.cli` + `shim.start`) and the serving path (`shim.daemon`), against a bare
   interpreter: the top modules by self and by cumulative time.
2. cProfile of real shim processes: N `ctr run --rm /bin/true` through a private containerd
   with bench/profhook/sitecustomize.py on the shims' PYTHONPATH, which profiles each shim
   process from interpreter start to exit. Aggregated per action (start / serve / delete):
   wall time per process and the top functions by cumulative time. cProfile inflates
   call-heavy code; use it for "where", the lifecycle benchmark for "how much".
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HERE, LXCFS_RUNTIME, Env, bench_env, production_like, progress

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
        ("start path (import shim.cli, shim.start)", [PY, "-c", "import shim.cli, shim.start"]),
        ("serving path (import shim.daemon)", [PY, "-c", "import shim.daemon"]),
    ):
        lines.append(f"  {label:48s} {_wall(cmd, env):7.1f} ms wall")
    for stmt in ("import shim.cli, shim.start", "import shim.daemon"):
        t = _importtime(stmt, env)
        lines.append(f"\n### `{stmt}`: top cumulative (ms)")
        for name, (s, c) in sorted(t.items(), key=lambda kv: -kv[1][1])[:25]:
            lines.append(f"  {c / 1e3:7.1f} cum {s / 1e3:7.1f} self  {name}")
        lines.append(f"\n### `{stmt}`: top self (ms)")
        for name, (s, c) in sorted(t.items(), key=lambda kv: -kv[1][0])[:15]:
            lines.append(f"  {s / 1e3:7.1f} self {c / 1e3:7.1f} cum  {name}")
    return "\n".join(lines)


def shim_profiles(tree: str | None, runs: int) -> str:
    with bench_env(quick=True, tree=tree) as env:
        prof_dir = env.workdir / "prof"
        prof_dir.mkdir()
        hook = str(HERE / "profhook")
        env.ctrd.stop()  # restart containerd with the hook on its (and its shims') env
        pp = env.ctrd.env.get("PYTHONPATH")
        env.ctrd.env["PYTHONPATH"] = hook + (os.pathsep + pp if pp else "")
        env.ctrd.env["BENCH_PROF_DIR"] = str(prof_dir)
        env.ctrd.start()
        for i in range(runs):
            cid = env.new_id("prof")
            r = env.ctrd.run(LXCFS_RUNTIME, env.rootfs, cid, "/bin/true")
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            progress(f"profile run {i + 1}/{runs}")
        env.leaks()  # waits for the shims to exit (and dump their profiles)
        out = ["## cProfile of shim processes (summed over runs; ms)"]
        for action in ("start", "serve", "delete"):
            files = sorted(glob.glob(str(prof_dir / f"{action}-*.prof")))
            if not files:
                continue
            st = pstats.Stats(*files, stream=io.StringIO())
            total = st.total_tt  # type: ignore[attr-defined]
            out.append(
                f"\n### {action}: {len(files)} processes, {total * 1e3 / len(files):.1f} ms "
                "profiled per process; top cumulative:"
            )
            buf = io.StringIO()
            st.stream = buf  # type: ignore[attr-defined]
            st.sort_stats("cumulative").print_stats(30)
            body = buf.getvalue().splitlines()
            start = next((i for i, x in enumerate(body) if "ncalls" in x), 0)
            out += ["  " + x for x in body[start:] if x.strip()]
        out.append(view_reads(env, prof_dir))
        return "\n".join(out)


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
    a = p.parse_args(argv)
    if not a.skip_imports:
        print(imports(a.tree), flush=True)
    print(shim_profiles(a.tree, a.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
