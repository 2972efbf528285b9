"""Starvation: one pod's busy /proc readers against another container's control path.

CRI puts a pod's containers in one shim, so our shim's event loop serves both the FUSE view
(every read of /proc/* in every container of the pod) and the Task API. Each side runs a
two-container group, `load` and `victim`, in one shim (`io.containerd.runc.v2.group`, which
both shims honour, as they honour CRI's `io.kubernetes.cri.sandbox-id`):

- ours: io.containerd.lxcfs.v2, the load container reads our FUSE view;
- reference: containerd's io.containerd.runc.v2 with a private lxcfs 5.0.3's copy of every
  file our view serves bound into both containers (lxcfs serves from its own process, as
  deployed).

We talk ttrpc to each group's shim directly, as containerd does, and time the victim's
control path, one cycle at a time:

- State round trip (also 5 in a row per cycle, so it has the most samples),
- Exec of `/bin/sleep` (the RPC alone: the shim records the process, no runc yet),
- Start of that exec (the shim runs `runc exec`: a process spawn, mostly the machine),
- Kill with SIGKILL (round trip),
- Kill sent → TaskExit received by a subscriber of containerd's event stream (`ctr events`
  on the same containerd: the shim's publish plus containerd's forwarding, i.e. the exit as
  containerd and CRI see it),
- Kill sent → Wait returns (the exit as the shim reports it to its caller),

then Wait/Delete untimed. Each side's load is 8 exec'd readers (bench/reader.c, one process
each so a Kill stops each) looping open/read/close over /proc/meminfo. Sides and phases
alternate in rounds (idle, loaded; ours, reference; order swapped each round) so the
machine's own noise falls on both. Target: p99 < 20 ms loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from betterproto.lib.google.protobuf import Any as AnyMsg
from betterproto.lib.google.protobuf import Empty

from bench.common import LIMITS, LXCFS_RUNTIME, RUNC_RUNTIME, Env, Row, progress
from protos.gen.containerd.task import v2 as api
from shim.identity import socket_path
from shim.transport.ttrpc import TtrpcClient

PROCESS_SPEC = "types.containerd.io/opencontainers/runtime-spec/1/Process"
GROUP_ANNOTATION = "io.containerd.runc.v2.group"
READERS = 8
METRICS = (
    "State",
    "Exec",
    "Start (runc exec)",
    "Kill",
    "Kill → TaskExit at containerd",
    "Kill → Wait returns",
)
STATES_PER_CYCLE = 5


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


class ExitEvents:
    """`ctr events` on the bench's containerd: when each /tasks/exit reached a subscriber.

    A thread reads ctr's lines and stamps them with perf_counter on arrival (ctr prints each
    event unbuffered as it comes off containerd's Subscribe stream).
    """

    def __init__(self, env: Env) -> None:
        c = env.ctrd
        self.proc = subprocess.Popen(
            [c.ctr_bin, "--address", c.address, "events"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=c.env,
            text=True,
        )
        self.seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t = time.perf_counter()
            _, sep, body = line.partition(" /tasks/exit ")
            if not sep:
                continue
            try:
                ev = json.loads(body)
            except ValueError:
                continue
            with self.lock:
                self.seen[(ev.get("container_id", ""), ev.get("id", ""))] = t

    async def wait(self, cid: str, exec_id: str, timeout: float = 10.0) -> float:
        """perf_counter at which the exit of `exec_id` arrived (polled; the stamp is exact)."""
        deadline = time.perf_counter() + timeout
        while True:
            with self.lock:
                t = self.seen.pop((cid, exec_id), None)
            if t is not None:
                return t
            if time.perf_counter() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"no /tasks/exit for {cid}/{exec_id} from `ctr events`")
            await anyio.sleep(0.002)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.thread.join(10)


@dataclass
class Side:
    """One two-container group in one shim, and its figures per phase."""

    name: str
    runtime: str
    group: str
    load: str
    victim: str
    mounts: tuple[str, ...] = ()  #: --mount of both containers (lxcfs's files, reference)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    loads: dict[str, list[float]] = field(default_factory=dict)
    server_pid: int = 0  #: what serves the load's /proc/meminfo: our shim, or lxcfs
    server_cpu: list[float] = field(default_factory=list)  #: its CPU share while loaded
    n: int = 0

    def add(self, phase: str, metric: str, seconds: float) -> None:
        self.samples.setdefault(phase, {}).setdefault(metric, []).append(seconds)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _shim_socket(env: Env, cid: str, group: str) -> str:
    """The shim's ttrpc socket as containerd recorded it (falls back to the naming rule)."""
    bundle = Path(env.ctrd.state, "io.containerd.runtime.v2.task", env.ctrd.namespace, cid)
    try:
        return (bundle / "address").read_text().strip().removeprefix("unix://")
    except OSError:
        return socket_path(env.ctrd.address, env.ctrd.namespace, group)


class _Client:
    def __init__(self, client: TtrpcClient, env: Env, side: Side) -> None:
        self.client, self.side = client, side
        self.service = env.ctrd.task_service
        self.md = {"containerd-namespace-ttrpc": env.ctrd.namespace}

    async def call(self, name: str, request: object, reply: type) -> object:
        return await self.client.call(
            self.service, name, request, reply, timeout=30, metadata=self.md
        )

    async def timed(self, name: str, request: object, reply: type) -> float:
        t = time.perf_counter()
        await self.call(name, request, reply)
        return time.perf_counter() - t

    def new_exec(self, cid: str, *args: str) -> api.ExecProcessRequest:
        self.side.n += 1
        process = {
            "args": list(args),
            "cwd": "/",
            "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0},
            "terminal": False,
        }
        spec = AnyMsg(type_url=PROCESS_SPEC, value=json.dumps(process).encode())
        return api.ExecProcessRequest(id=cid, exec_id=f"x{self.side.n}", spec=spec)

    async def reap(self, cid: str, exec_id: str) -> None:
        await self.call("Wait", api.WaitRequest(id=cid, exec_id=exec_id), api.WaitResponse)
        await self.call("Delete", api.DeleteRequest(id=cid, exec_id=exec_id), api.DeleteResponse)


async def _cycles(c: _Client, events: ExitEvents, phase: str, count: int) -> None:
    side, victim = c.side, c.side.victim
    for _ in range(count):
        for _ in range(STATES_PER_CYCLE):
            side.add(
                phase,
                "State",
                await c.timed("State", api.StateRequest(id=victim), api.StateResponse),
            )
        req = c.new_exec(victim, "/bin/sleep", "1000")
        side.add(phase, "Exec", await c.timed("Exec", req, Empty))
        side.add(
            phase,
            "Start (runc exec)",
            await c.timed(
                "Start", api.StartRequest(id=victim, exec_id=req.exec_id), api.StartResponse
            ),
        )
        t0 = time.perf_counter()
        await c.call("Kill", api.KillRequest(id=victim, exec_id=req.exec_id, signal=9), Empty)
        side.add(phase, "Kill", time.perf_counter() - t0)
        await c.call("Wait", api.WaitRequest(id=victim, exec_id=req.exec_id), api.WaitResponse)
        side.add(phase, "Kill → Wait returns", time.perf_counter() - t0)
        side.add(
            phase, "Kill → TaskExit at containerd", await events.wait(victim, req.exec_id) - t0
        )
        await c.call(
            "Delete", api.DeleteRequest(id=victim, exec_id=req.exec_id), api.DeleteResponse
        )


async def _round(env: Env, side: Side, events: ExitEvents, cycles: int) -> None:
    path = _shim_socket(env, side.victim, side.group)
    if path != _shim_socket(env, side.load, side.group):
        raise RuntimeError(f"{side.name}: load and victim are not served by one shim")
    async with TtrpcClient.connect(path) as raw:
        c = _Client(raw, env, side)
        side.loads.setdefault("idle", []).append(os.getloadavg()[0])
        await _cycles(c, events, "idle", cycles)
        readers = []
        for _ in range(READERS):
            req = c.new_exec(side.load, "/bin/vread", "/proc/meminfo", "2000000000")
            await c.call("Exec", req, Empty)
            await c.call(
                "Start", api.StartRequest(id=side.load, exec_id=req.exec_id), api.StartResponse
            )
            readers.append(req.exec_id)
        try:
            await anyio.sleep(1)  # every reader is looping
            side.loads.setdefault("loaded", []).append(os.getloadavg()[0])
            t, cpu = time.monotonic(), _cpu_seconds(side.server_pid)
            await _cycles(c, events, "loaded", cycles)
            side.server_cpu.append(
                (_cpu_seconds(side.server_pid) - cpu) / (time.monotonic() - t) * 100
            )
        finally:
            with anyio.CancelScope(shield=True):
                for exec_id in readers:
                    await c.call(
                        "Kill", api.KillRequest(id=side.load, exec_id=exec_id, signal=9), Empty
                    )
                for exec_id in readers:
                    await c.reap(side.load, exec_id)


@contextmanager
def _groups(env: Env, sides: list[Side], lxcfs: Path) -> Iterator[None]:
    """Start each side's two containers; the reference gets lxcfs's copy of every file our
    view binds into our victim (so runc exec and the exec'd process meet lxcfs where they
    meet our view), as lxcfs is deployed."""
    from bench.view import view_files

    started: list[str] = []
    try:
        for side in sides:
            if side.runtime == RUNC_RUNTIME:
                files = view_files(env.init_pid(sides[0].victim))
                side.mounts = tuple(
                    f"type=bind,src={lxcfs}{f},dst={f},options=rbind:ro"
                    for f in files
                    if (lxcfs / f.lstrip("/")).exists()
                )
                progress(
                    f"starvation: lxcfs's {len(side.mounts)} of our {len(files)} files "
                    "bound into the reference pod"
                )
            for cid in (side.load, side.victim):
                args = [*LIMITS, "--annotation", f"{GROUP_ANNOTATION}={side.group}"]
                for m in side.mounts:
                    args += ["--mount", m]
                started.append(cid)
                r = env.ctrd.run_detached(
                    side.runtime,
                    env.rootfs,
                    cid,
                    "/bin/sleep",
                    "100000",
                    ctr_args=tuple(args),
                    timeout=120,
                )
                if r.returncode != 0:
                    raise RuntimeError(f"ctr run -d {cid} ({side.runtime}): {r.stderr.strip()}")
        yield
    finally:
        env.remove_many(started, 2)


def _rows(sides: list[Side], rounds: int) -> list[Row]:
    ours, ref = sides
    rows = []
    for phase, label in (("idle", "idle"), ("loaded", f"{READERS} readers in the pod")):
        load = ", ".join(
            f"{s.name} {min(s.loads[phase]):.1f}-{max(s.loads[phase]):.1f}" for s in sides
        )
        for metric in METRICS:
            a, b = ours.samples[phase][metric], ref.samples[phase][metric]
            for q, qn in ((0.5, "p50"), (0.99, "p99")):
                rows.append(
                    Row(
                        "starvation",
                        f"{metric} {qn}, {label}",
                        _p(a, q) * 1e3,
                        _p(b, q) * 1e3,
                        "ms",
                        "< 20 ms" if qn == "p99" and phase == "loaded" else "",
                        f"{len(a)}/{len(b)} samples, {rounds} rounds; load {load}",
                    )
                )
    rows.append(
        Row(
            "starvation",
            f"CPU of the /proc server, {READERS} readers in the pod",
            max(ours.server_cpu),
            max(ref.server_cpu),
            "%",
            "",
            "our shim (FUSE and Task API, one thread) vs lxcfs; % of one CPU, highest round",
        )
    )
    return rows


def bench(env: Env) -> list[Row]:
    from bench.view import private_lxcfs

    rounds, cycles = (1, 12) if env.quick else (2, 100)
    cycles = int(os.environ.get("BENCH_STARVATION_CYCLES", cycles))  # per phase and round
    if not (env.rootfs / "bin" / "vread").exists():
        env.compile_c("reader.c", Path(env.rootfs, "bin", "vread"))
    with private_lxcfs(env) as mnt:
        sides = [
            Side(
                "ours",
                LXCFS_RUNTIME,
                env.new_id("pod-ours"),
                env.new_id("load-ours"),
                env.new_id("victim-ours"),
            ),
            Side(
                "runc.v2+lxcfs",
                RUNC_RUNTIME,
                env.new_id("pod-ref"),
                env.new_id("load-ref"),
                env.new_id("victim-ref"),
            ),
        ]
        events = ExitEvents(env)
        try:
            with _groups(env, sides, mnt):
                shim = [
                    pid
                    for pid, cmd in env.ctrd.shim_processes()
                    if f"-group {sides[0].group}" in cmd
                ]
                if len(shim) != 1:
                    raise RuntimeError(f"our pod is not in one shim process: {shim}")
                sides[0].server_pid = shim[0]
                sides[1].server_pid = int((env.workdir / "lxcfs.pid").read_text())
                for rnd in range(rounds):
                    for side in sides if rnd % 2 == 0 else sides[::-1]:
                        progress(
                            f"starvation round {rnd + 1}/{rounds}: {side.name}, idle "
                            f"then {READERS} readers of /proc/meminfo in the pod"
                        )
                        anyio.run(_round, env, side, events, cycles)
        finally:
            events.close()
    return _rows(sides, rounds)
