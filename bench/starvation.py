"""Starvation: one pod's busy /proc readers against another container's control path.

CRI puts a pod's containers in one shim, so its event loop serves both the FUSE view (every
read of /proc/* in every container of the pod) and the Task API. Two containers share one
shim here (`io.containerd.lxcfs.v2.group`): `load` and `victim`. We talk ttrpc to that shim
directly, as containerd does, and time the victim's control path:

- State round trip (200 calls),
- Exec + Start + Wait + Delete of `/bin/true` (30 times),
- Kill of a running exec'd `sleep` (round trip) and the time until its Wait returns (the exit
  as the shim sees and reports it; 30 times),

first with `load` idle, then while `load` runs 8 readers looping open/read/close over
/proc/meminfo (bench/reader.c). Target: p99 < 20 ms loaded. The loaded/idle ratio is shown.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import anyio
from betterproto.lib.google.protobuf import Any as AnyMsg
from betterproto.lib.google.protobuf import Empty

from bench.common import LIMITS, LXCFS_RUNTIME, Env, Row, progress
from protos.gen.containerd.task import v2 as api
from shim.identity import socket_path
from shim.transport.ttrpc import TtrpcClient

TASK = "containerd.task.v2.Task"
PROCESS_SPEC = "types.containerd.io/opencontainers/runtime-spec/1/Process"
READERS = 8


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


class _Client:
    def __init__(self, client: TtrpcClient, namespace: str) -> None:
        self.client, self.md = client, {"containerd-namespace-ttrpc": namespace}
        self.n = 0

    async def call(self, name: str, request: object, reply: type) -> object:
        return await self.client.call(TASK, name, request, reply, timeout=30, metadata=self.md)

    def spec(self, *args: str) -> AnyMsg:
        process = {
            "args": list(args),
            "cwd": "/",
            "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0},
            "terminal": False,
        }
        return AnyMsg(type_url=PROCESS_SPEC, value=json.dumps(process).encode())

    async def start_exec(self, cid: str, *args: str) -> str:
        self.n += 1
        exec_id = f"x{self.n}"
        await self.call(
            "Exec", api.ExecProcessRequest(id=cid, exec_id=exec_id, spec=self.spec(*args)), Empty
        )
        await self.call("Start", api.StartRequest(id=cid, exec_id=exec_id), api.StartResponse)
        return exec_id


async def _measure(c: _Client, victim: str, quick: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        "State": [],
        "Exec /bin/true": [],
        "Kill": [],
        "Kill to exit seen": [],
    }
    for _ in range(50 if quick else 200):
        t = time.perf_counter()
        await c.call("State", api.StateRequest(id=victim), api.StateResponse)
        out["State"].append(time.perf_counter() - t)
    for _ in range(10 if quick else 30):
        t = time.perf_counter()
        exec_id = await c.start_exec(victim, "/bin/true")
        await c.call("Wait", api.WaitRequest(id=victim, exec_id=exec_id), api.WaitResponse)
        await c.call("Delete", api.DeleteRequest(id=victim, exec_id=exec_id), api.DeleteResponse)
        out["Exec /bin/true"].append(time.perf_counter() - t)
    for _ in range(10 if quick else 30):
        exec_id = await c.start_exec(victim, "/bin/sleep", "1000")
        t = time.perf_counter()
        await c.call("Kill", api.KillRequest(id=victim, exec_id=exec_id, signal=9), Empty)
        out["Kill"].append(time.perf_counter() - t)
        await c.call("Wait", api.WaitRequest(id=victim, exec_id=exec_id), api.WaitResponse)
        out["Kill to exit seen"].append(time.perf_counter() - t)
        await c.call("Delete", api.DeleteRequest(id=victim, exec_id=exec_id), api.DeleteResponse)
    return out


async def _run(env: Env, group: str, load: str, victim: str) -> tuple[dict, dict, int]:
    path = socket_path(env.ctrd.address, env.ctrd.namespace, group)
    async with TtrpcClient.connect(path) as raw:
        c = _Client(raw, env.ctrd.namespace)
        progress("starvation: idle")
        idle = await _measure(c, victim, env.quick)
        readers = await c.start_exec(
            load, "/bin/vread", "/proc/meminfo", "2000000000", str(READERS)
        )
        await anyio.sleep(1)  # the readers are up
        progress(f"starvation: {READERS} readers of /proc/meminfo in the other container")
        loaded = await _measure(c, victim, env.quick)
        await c.call("Kill", api.KillRequest(id=load, exec_id=readers, signal=9, all=True), Empty)
        await c.call("Wait", api.WaitRequest(id=load, exec_id=readers), api.WaitResponse)
        await c.call("Delete", api.DeleteRequest(id=load, exec_id=readers), api.DeleteResponse)
        return idle, loaded, c.n


def bench(env: Env) -> list[Row]:
    group = env.new_id("pod")
    load, victim = env.new_id("load"), env.new_id("victim")
    if not (env.rootfs / "bin" / "vread").exists():
        env.compile_c("reader.c", Path(env.rootfs, "bin", "vread"))
    try:
        for cid in (load, victim):
            r = env.ctrd.run_detached(
                LXCFS_RUNTIME,
                env.rootfs,
                cid,
                "/bin/sleep",
                "100000",
                ctr_args=(*LIMITS, "--annotation", f"io.containerd.lxcfs.v2.group={group}"),
                timeout=120,
            )
            if r.returncode != 0:
                raise RuntimeError(f"ctr run -d {cid}: {r.stderr.strip()}")
        shims = env.ctrd.shim_processes()
        if len(shims) != 1:
            raise RuntimeError(f"the two containers are not in one shim: {shims}")
        idle, loaded, _ = anyio.run(_run, env, group, load, victim)
    finally:
        env.remove_many([victim, load], 2)
    rows = []
    for name in idle:
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ours, ref = _p(loaded[name], q) * 1e3, _p(idle[name], q) * 1e3
            rows.append(
                Row(
                    "starvation",
                    f"{name} {label}, {READERS} readers in the pod vs idle",
                    ours,
                    ref,
                    "ms",
                    "< 20 ms" if label == "p99" else "",
                    f"{len(loaded[name])} calls; mean {statistics.mean(loaded[name]) * 1e3:.2f}"
                    f" vs {statistics.mean(idle[name]) * 1e3:.2f} ms",
                )
            )
    return rows
