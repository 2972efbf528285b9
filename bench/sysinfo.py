"""What answering sysinfo(2) costs (issue 15), and what the files runc will not bind cost.

* **round trip**: ns per sysinfo(2) inside an lxcfs-runtime container (the shim answers
  through seccomp user notification) vs inside a runc.v2 container (the kernel answers).
* **other syscalls**: ns per getppid(2) -- a syscall-heavy loop -- with the notify rule vs the
  same container opted out (``io.containerd.lxcfs.disable=sysinfo``), both without and with
  containerd's default seccomp profile (``--seccomp``). The filter runs on every syscall; only
  sysinfo leaves the kernel.
* **create/start**: wall time of ``ctr run --rm … /bin/true`` with everything on vs with
  sysinfo and the late-mounted files (vmstat, pressure) opted out, interleaved.

The clock runs inside the container (bench/sysloop.c, gcc -static); it is started with
``ctr task exec`` so runc installs the container's filter on it, as on every process there.
"""

from __future__ import annotations

import sys
import time

from bench.common import LIMITS, LXCFS_RUNTIME, RUNC_RUNTIME, Env, Row, median, progress

OPT_OUT_SYSINFO = "io.containerd.lxcfs.disable=sysinfo"
OPT_OUT_ALL_NEW = (
    "io.containerd.lxcfs.disable=sysinfo,vmstat,pressure-cpu,pressure-memory,pressure-io"
)


def _loop(env: Env, cid: str, syscall: str, iterations: int) -> float:
    eid = f"s{time.monotonic_ns() % 10**9}"
    r = env.ctrd.ctr(
        "task", "exec", "--exec-id", eid, cid, "/bin/sysloop", syscall, str(iterations), timeout=120
    )
    if r.returncode != 0:
        raise RuntimeError(f"sysloop in {cid}: {r.stdout} {r.stderr}")
    ns, errors = r.stdout.split()
    if int(errors):
        raise RuntimeError(f"sysloop {syscall} in {cid}: {errors} errors")
    return float(ns)


def _container(env: Env, runtime: str, hint: str, *extra: str) -> str:
    cid = env.new_id(hint)
    r = env.ctrd.run_detached(
        runtime, env.rootfs, cid, "/bin/sleep", "100000", ctr_args=(*LIMITS, *extra)
    )
    if r.returncode != 0 or not env.ctrd.wait_status(cid, "RUNNING"):
        raise RuntimeError(f"{cid}: {r.stderr}")
    return cid


def _paired(
    env: Env, a: str, b: str, syscall: str, n: int, rounds: int
) -> tuple[float | None, float | None, float | None]:
    """Interleaved rounds: medians of a, of b, and of the per-round ratio a/b."""
    xa, xb, ratios = [], [], []
    for _ in range(rounds):
        ta, tb = _loop(env, a, syscall, n), _loop(env, b, syscall, n)
        xa.append(ta)
        xb.append(tb)
        ratios.append(ta / tb)
    return median(xa), median(xb), median(ratios)


def _run_rm(env: Env, *extra: str) -> float:
    cid = env.new_id("si-life")
    t = time.monotonic()
    r = env.ctrd.run(
        LXCFS_RUNTIME, env.rootfs, cid, "/bin/true", ctr_args=(*LIMITS, *extra), timeout=60
    )
    if r.returncode != 0:
        raise RuntimeError(f"{cid}: {r.stderr}")
    return (time.monotonic() - t) * 1000


def bench(env: Env) -> list[Row]:
    rounds = 3 if env.quick else 9
    env.compile_c("sysloop.c", env.rootfs / "bin" / "sysloop")
    rows: list[Row] = []
    cids = []
    try:
        ours = _container(env, LXCFS_RUNTIME, "si-ours")
        runc = _container(env, RUNC_RUNTIME, "si-runc")
        off = _container(env, LXCFS_RUNTIME, "si-off", "--annotation", OPT_OUT_SYSINFO)
        ours_p = _container(env, LXCFS_RUNTIME, "si-ours-prof", "--seccomp")
        off_p = _container(
            env, LXCFS_RUNTIME, "si-off-prof", "--seccomp", "--annotation", OPT_OUT_SYSINFO
        )
        cids = [ours, runc, off, ours_p, off_p]

        progress("sysinfo: round trip through the shim vs the kernel")
        a, b, ratio = _paired(env, ours, runc, "sysinfo", 300 if env.quick else 2000, rounds)
        rows.append(
            Row(
                "sysinfo",
                "sysinfo(2) round trip",
                a and a / 1000,
                b and b / 1000,
                "µs",
                note="ref: runc.v2 container (kernel answers)",
                ratio=ratio,
            )
        )

        n = 200_000 if env.quick else 1_000_000
        progress("sysinfo: getppid loop with and without the notify rule")
        a, b, ratio = _paired(env, ours, off, "getppid", n, rounds)
        rows.append(
            Row(
                "sysinfo",
                "getppid(2), rule on (no profile)",
                a,
                b,
                "ns",
                note="ref: same runtime, sysinfo opted out (no filter)",
                ratio=ratio,
            )
        )
        a, b, ratio = _paired(env, ours_p, off_p, "getppid", n, rounds)
        rows.append(
            Row(
                "sysinfo",
                "getppid(2), rule on (--seccomp)",
                a,
                b,
                "ns",
                note="ref: default profile without the rule",
                ratio=ratio,
            )
        )
    finally:
        env.remove_many(cids)

    progress("sysinfo: ctr run --rm with and without sysinfo + late mounts")
    on, off_t, ratios = [], [], []
    for _ in range(rounds + 2):
        x, y = _run_rm(env), _run_rm(env, "--annotation", OPT_OUT_ALL_NEW)
        on.append(x)
        off_t.append(y)
        ratios.append(x / y)
    rows.append(
        Row(
            "sysinfo",
            "ctr run --rm /bin/true, all on",
            median(on),
            median(off_t),
            "ms",
            note="ref: sysinfo, vmstat, pressure opted out",
            ratio=median(ratios),
        )
    )
    return rows


def main() -> int:
    from bench.common import bench_env, table

    with bench_env(quick="--quick" in sys.argv) as env:
        print(table(bench(env)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
