"""Lifecycle latency: `ctr run --rm --rootfs <busybox> ID /bin/true`, lxcfs vs runc.v2.

Pairs alternate which runtime goes first (A/B then B/A) so drift on this shared machine hits
both sides alike; the headline is the median of the per-pair ratios.

The split comes from two clocks that share CLOCK_REALTIME:
  * shimtime (bench/shimtime.c), a sub-millisecond C wrapper both runtimes' shim binaries are
    called through, logs when containerd ran `<shim> start` and when the address came back;
  * containerd's debug log timestamps (ns) of the task events the shim forwards
    (/tasks/create, /tasks/start, /tasks/exit, /tasks/delete).
Runs are sequential, so events are attributed to a run by time window. An event's timestamp is
when containerd *received* it: each phase includes the shim's event forwarding, for both shims.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from bench.common import LXCFS_RUNTIME, RUNC_RUNTIME, SHORT, Env, Row, median, progress

_LOG_RE = re.compile(r'^time="([^"]+)".*?msg="event (?:forwarded|published)" ns=(\S+) topic=(\S+)')

#: (label, start mark, end mark) of the split; marks are keys of Run.marks.
PHASES = (
    ("ctr → shim start invoked", "ctr", "shim0"),
    ("shim start → address printed", "shim0", "shim1"),
    ("address → Create done (TaskCreate)", "shim1", "/tasks/create"),
    ("Create → Start done (TaskStart)", "/tasks/create", "/tasks/start"),
    ("Start → exit seen (TaskExit)", "/tasks/start", "/tasks/exit"),
    ("exit → Wait+Delete done (TaskDelete)", "/tasks/exit", "/tasks/delete"),
    ("Delete → ctr exits (shutdown, cleanup)", "/tasks/delete", "end"),
)


@dataclass
class Run:
    runtime: str
    cid: str
    begin: int  # time.time_ns() before ctr
    end: int
    rc: int
    marks: dict[str, int] = field(default_factory=dict)

    @property
    def wall_ms(self) -> float:
        return (self.end - self.begin) / 1e6


def parse_ts(ts: str) -> int:
    """containerd's RFC 3339 timestamp with up to ns precision → ns since the epoch."""
    base, _, frac = ts.rstrip("Z").partition(".")
    sec = datetime.fromisoformat(base + "+00:00").timestamp()
    return int(sec) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def one_run(env: Env, runtime: str) -> Run:
    cid = env.new_id(f"lc-{SHORT[runtime]}")
    begin = time.time_ns()
    r = env.ctrd.run(runtime, env.rootfs, cid, "/bin/true", timeout=60)
    end = time.time_ns()
    if r.returncode != 0:
        raise RuntimeError(f"ctr run {runtime} failed ({r.returncode}): {r.stderr.strip()}")
    return Run(runtime, cid, begin, end, r.returncode)


def attach_marks(env: Env, runs: list[Run]) -> None:
    """Fill Run.marks from the shimtime log and containerd's log."""
    starts: dict[str, tuple[int, int]] = {}
    if env.start_log.exists():
        for line in env.start_log.read_text().splitlines():
            f = line.split()
            if len(f) >= 3:
                starts[f[0]] = (int(f[1]), int(f[2]))
    events: list[tuple[int, str]] = []
    for line in env.ctrd.log_path.read_text(errors="replace").splitlines():
        m = _LOG_RE.match(line)
        if m and m.group(2) == env.ctrd.namespace:
            events.append((parse_ts(m.group(1)), m.group(3)))
    for run in runs:
        run.marks = {"ctr": run.begin, "end": run.end}
        if run.cid in starts:
            run.marks["shim0"], run.marks["shim1"] = starts[run.cid]
        for ts, topic in events:
            if run.begin <= ts <= run.end and topic.startswith("/tasks/"):
                run.marks.setdefault(topic, ts)


def bench(env: Env, pairs: int | None = None) -> list[Row]:
    pairs = pairs or (3 if env.quick else 25)
    progress(f"lifecycle: warm-up, then {pairs} alternating pairs of `ctr run --rm ... /bin/true`")
    for rt in (RUNC_RUNTIME, LXCFS_RUNTIME):
        one_run(env, rt)
    runs: list[tuple[Run, Run]] = []
    for i in range(pairs):
        order = (LXCFS_RUNTIME, RUNC_RUNTIME) if i % 2 == 0 else (RUNC_RUNTIME, LXCFS_RUNTIME)
        got = {rt: one_run(env, rt) for rt in order}
        runs.append((got[LXCFS_RUNTIME], got[RUNC_RUNTIME]))
        progress(
            f"lifecycle pair {i + 1}/{pairs}: lxcfs {got[LXCFS_RUNTIME].wall_ms:.0f} ms, "
            f"runc {got[RUNC_RUNTIME].wall_ms:.0f} ms"
        )
    attach_marks(env, [r for pair in runs for r in pair])
    ours = [a.wall_ms for a, _ in runs]
    ref = [b.wall_ms for _, b in runs]
    rows = [
        Row(
            "lifecycle",
            "ctr run --rm /bin/true (median of pairs)",
            median(ours),
            median(ref),
            "ms",
            "<= 1.2x",
            f"{pairs} pairs",
            ratio=median([a / b for a, b in zip(ours, ref, strict=True)]),
        )
    ]
    for label, a, b in PHASES:
        ph_ours = [x.marks[b] - x.marks[a] for x, _ in runs if a in x.marks and b in x.marks]
        ph_ref = [y.marks[b] - y.marks[a] for _, y in runs if a in y.marks and b in y.marks]
        o, r = median(ph_ours), median(ph_ref)
        rows.append(
            Row(
                "lifecycle",
                f"  {label}",
                o / 1e6 if o is not None else None,
                r / 1e6 if r is not None else None,
                "ms",
                note="" if ph_ours and ph_ref else "marks missing",
            )
        )
    return rows
