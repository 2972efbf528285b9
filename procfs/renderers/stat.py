"""/proc/stat for a container (procfs-views.md §7, with the v2 gap closed).

CPU lines: one ``cpuN`` per visible CPU (renumbered like cpuinfo) plus the ``cpu`` sum.
user/system come from the cgroup's own CPU time (v1 per CPU from ``cpuacct.usage_all``, time
spent on hidden CPUs spread over the visible ones; v2 ``cpu.stat`` spread evenly), idle is the
rest of that host CPU's time -- so ``top`` sees the container's load, and the columns add up
to the host's elapsed ticks like the kernel's. Every column is kept monotonic against the last
rendering (:class:`StatHistory`): readers compute rates from deltas, and a counter going
backwards shows as absurd percentages.

Other lines: ``btime`` is the container's boot (its init's start), ``processes`` its last pid,
``procs_running``/``procs_blocked`` its threads, ``ctxt`` its threads' context switches;
``intr`` and ``softirq`` stay the host's (no per-cgroup source exists).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from procfs.snapshot import CpuSnapshot, TaskCounts

NSEC = 1_000_000_000
#: user nice system idle iowait irq softirq steal guest guest_nice
COLUMNS = 10
_IDLE = 3


@dataclass
class StatHistory:
    """What the last rendering showed, per container (mutable, owned by the caller)."""

    cpus: list[list[int]] = field(default_factory=list)
    ctxt: int = 0
    processes: int = 0


@dataclass(frozen=True)
class StatInputs:
    cpu: CpuSnapshot
    tasks: TaskCounts
    btime: int  # seconds since the epoch
    hz: int = 100


def parse_host_cpus(host: bytes) -> dict[int, list[int]]:
    """``cpuN`` lines of host /proc/stat → {N: 10 columns} (older kernels print fewer)."""
    out: dict[int, list[int]] = {}
    for line in host.splitlines():
        if line.startswith(b"cpu") and line[3:4].isdigit():
            name, *values = line.split()
            cols = [int(v) for v in values][:COLUMNS]
            out[int(name[3:])] = cols + [0] * (COLUMNS - len(cols))
    return out


def cgroup_ticks(cpu: CpuSnapshot, hz: int) -> list[tuple[int, int]]:
    """(user, system) ticks per visible CPU."""
    visible = cpu.visible()
    n = len(visible)
    if not n:
        return []
    if cpu.percpu is None:
        per = [(cpu.user_ns / n, cpu.system_ns / n)] * n
    else:
        shown = set(visible)
        extra_u = sum(u for c, (u, _) in cpu.percpu.items() if c not in shown) / n
        extra_s = sum(s for c, (_, s) in cpu.percpu.items() if c not in shown) / n
        per = [
            (cpu.percpu.get(c, (0, 0))[0] + extra_u, cpu.percpu.get(c, (0, 0))[1] + extra_s)
            for c in visible
        ]
    return [(int(u * hz // NSEC), int(s * hz // NSEC)) for u, s in per]


def cpu_columns(host_cpus: dict[int, list[int]], inp: StatInputs) -> list[list[int]]:
    """Unclamped columns per visible CPU: cgroup user/system, idle = the rest of the host
    CPU's elapsed ticks (its other columns summed, guest already in user)."""
    rows = []
    fallback = [0] * COLUMNS
    if host_cpus:
        fallback = [sum(c[i] for c in host_cpus.values()) // len(host_cpus) for i in range(COLUMNS)]
    for host_cpu, (user, system) in zip(
        inp.cpu.visible(), cgroup_ticks(inp.cpu, inp.hz), strict=True
    ):
        h = host_cpus.get(host_cpu, fallback)
        elapsed = sum(h[:8])
        row = [0] * COLUMNS
        row[0], row[2] = user, system
        row[_IDLE] = max(elapsed - user - system, 0)
        rows.append(row)
    return rows


def render_stat(host: bytes, inp: StatInputs, history: StatHistory) -> bytes:
    """Container /proc/stat; updates ``history`` with what it shows."""
    rows = cpu_columns(parse_host_cpus(host), inp)
    if len(history.cpus) == len(rows):
        rows = [
            [max(a, b) for a, b in zip(new, old, strict=True)]
            for new, old in zip(rows, history.cpus, strict=True)
        ]
    history.cpus = rows
    history.ctxt = max(history.ctxt, inp.tasks.ctxt)
    history.processes = max(history.processes, inp.tasks.last_pid)
    total = [sum(r[i] for r in rows) for i in range(COLUMNS)]
    out = [b"cpu  " + _cols(total)]
    out += [b"cpu%d " % i + _cols(r) for i, r in enumerate(rows)]
    replaced = {
        b"ctxt": history.ctxt,
        b"btime": inp.btime,
        b"processes": history.processes,
        b"procs_running": inp.tasks.running,
        b"procs_blocked": inp.tasks.blocked,
    }
    for line in host.splitlines():
        key = line.split(b" ", 1)[0]
        if key.startswith(b"cpu"):
            continue
        if key in replaced:
            out.append(key + b" %d\n" % replaced[key])
        else:
            out.append(line + b"\n")
    return b"".join(out)


def _cols(values: list[int]) -> bytes:
    return b" ".join(b"%d" % v for v in values) + b"\n"
