"""Pure renderers of every view file on the v1 and v2 fixture trees (real kernel formats)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from procfs.cgroups import Hierarchies, resolve_spec_path
from procfs.cpuset import format_cpuset, parse_cpuset
from procfs.readers import read_cpu, read_io, read_memory
from procfs.renderers import (
    render_cpu_online,
    render_cpuinfo,
    render_diskstats,
    render_loadavg,
    render_slabinfo,
    render_stat,
    render_swaps,
    render_uptime,
)
from procfs.renderers.loadavg import FIXED_1, LoadAverage, calc_load
from procfs.renderers.stat import StatHistory, StatInputs
from procfs.renderers.uptime import uptime_values
from procfs.snapshot import CpuSnapshot, TaskCounts

FIX = Path(__file__).parent / "fixtures"
HOST = FIX / "host"
V1 = Hierarchies(
    v1={c: FIX / "cgroup_v1" / c for c in ("cpuset", "cpu", "cpuacct", "blkio", "memory")}
)
V2 = Hierarchies(v2=FIX / "cgroup_v2")
V1_REF = resolve_spec_path("/ctr", V1)
V2_REF = resolve_spec_path("/cpu.slice/ctr.scope", V2)
ONLINE = HOST / "online"


def test_cpuset_strings() -> None:
    assert parse_cpuset("0-2,5,7-8\n") == [0, 1, 2, 5, 7, 8]
    assert parse_cpuset("") == []
    assert format_cpuset([8, 0, 1, 2, 5, 7]) == "0-2,5,7-8"
    with pytest.raises(ValueError):
        parse_cpuset("3-1")


def test_cpu_v1_cpuset_with_gap_and_quota() -> None:
    cpu = read_cpu(V1_REF, ONLINE)
    assert cpu.cpuset == (0, 2, 3)
    assert (cpu.quota_us, cpu.period_us) == (150000, 100000)
    assert cpu.max_cpus() == 2  # 1.5 CPUs → 2, rounded up
    assert cpu.visible() == (0, 2)
    assert cpu.percpu is not None and cpu.percpu[2] == (3_000_000_000, 1_000_000_000)
    assert cpu.user_ns == 5_500_000_000 and cpu.system_ns == 2_000_000_000


def test_cpu_v2_effective_cpuset_and_cpu_max() -> None:
    cpu = read_cpu(V2_REF, ONLINE)
    assert cpu.cpuset == (1, 3)  # inherited from cpu.slice's cpuset.cpus.effective
    assert cpu.quota_us == 50000 and cpu.max_cpus() == 1  # 0.5 → 1
    assert cpu.percpu is None
    assert (cpu.user_ns, cpu.system_ns) == (2_000_000_000, 1_000_000_000)


@pytest.mark.parametrize(
    ("quota", "n"), [(None, 3), (50000, 1), (100000, 1), (100001, 2), (250000, 3), (10**9, 3)]
)
def test_max_cpus(quota, n) -> None:
    assert CpuSnapshot((0, 2, 3), quota_us=quota).max_cpus() == n


def test_cpuinfo_x86_renumbers_the_cpuset() -> None:
    host = (HOST / "cpuinfo_x86_2cpu").read_bytes()
    out = render_cpuinfo(host, (1,)).decode()
    assert re.findall(r"^processor\t: (\d+)$", out, re.M) == ["0"]
    assert re.search(r"^apicid\t\t: 1$", out, re.M)  # host CPU 1's block
    both = render_cpuinfo(host, (0, 1))
    assert both == host


def test_cpuinfo_arm64_and_ppc64_keep_global_lines() -> None:
    arm = render_cpuinfo((HOST / "cpuinfo_arm64").read_bytes(), (1,)).decode()
    assert arm.count("processor") == 1 and arm.startswith("processor\t: 0\nBogoMIPS")
    ppc = render_cpuinfo((HOST / "cpuinfo_ppc64le").read_bytes(), (0,)).decode()
    assert ppc.count("processor") == 1 and "timebase\t: 512000000" in ppc
    assert "MMU\t\t: Radix" in ppc  # trailer kept though host CPU 1 is hidden (lxcfs drops it)


def test_cpuinfo_s390x() -> None:
    out = render_cpuinfo((HOST / "cpuinfo_s390x").read_bytes(), (1,)).decode()
    assert "# processors    : 1\n" in out
    assert "processor 0: version = FF,  identification = 033EF7" in out
    assert "233EF7" not in out
    assert out.count("cpu number") == 1 and "cpu number      : 0\n" in out


def test_cpu_online() -> None:
    assert render_cpu_online((0, 2)) == b"0-1\n"
    assert render_cpu_online((3,)) == b"0\n"


def _stat(cpu: CpuSnapshot, hist: StatHistory, tasks: TaskCounts | None = None) -> dict:
    inp = StatInputs(cpu, tasks or TaskCounts(3, 1, 0, 7, 40), btime=1700000100, hz=100)
    out = render_stat((HOST / "stat").read_bytes(), inp, hist).decode()
    return {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()}


def test_stat_v1_per_cpu_usage_idle_derived() -> None:
    cpu = read_cpu(V1_REF, ONLINE)
    rows = _stat(cpu, StatHistory())
    assert [k for k in rows if k.startswith("cpu")] == ["cpu", "cpu0", "cpu1"]
    # cpu0 = host 0: 200+100 ticks + half the hidden CPUs' (1, 3) usage: 50/2 user
    assert rows["cpu0"][:4] == ["225", "0", "100", str(2156 - 325)]
    # cpu1 = host 2 (the cpuset gap skipped)
    assert rows["cpu1"][:4] == ["325", "0", "100", str(2154 - 425)]
    assert rows["cpu"][0] == "550"
    assert rows["btime"] == ["1700000100"] and rows["processes"] == ["7"]
    assert rows["ctxt"] == ["40"] and rows["procs_running"] == ["1"]
    assert rows["intr"] == ["12345", "0", "1"]  # host's, no per-cgroup source


def test_stat_v2_spreads_cpu_stat_and_stays_monotonic() -> None:
    cpu = read_cpu(V2_REF, ONLINE)
    hist = StatHistory()
    rows = _stat(cpu, hist, TaskCounts(2, 1, 0, 9, 100))
    assert [k for k in rows if k.startswith("cpu")] == ["cpu", "cpu0"]
    assert rows["cpu0"][:4] == ["200", "0", "100", str(2153 - 300)]  # host cpu1 elapsed 2153
    # usage counters cannot go back; a thread exiting drops the ctxt sum: clamped
    less = CpuSnapshot(cpu.cpuset, cpu.quota_us, cpu.period_us, None, 1_000_000_000, 0)
    again = _stat(less, hist, TaskCounts(1, 1, 0, 9, 50))
    assert again["cpu0"][:3] == rows["cpu0"][:3]
    assert int(again["cpu0"][3]) >= int(rows["cpu0"][3])
    assert again["ctxt"] == ["100"]


def test_uptime() -> None:
    up, idle = uptime_values(1000.0, 900.0, 2, 50.0)
    assert (up, idle) == (100.0, 150.0)
    assert uptime_values(10.0, 20.0, 1, 5.0) == (0.0, 0.0)
    assert render_uptime(100.0, 150.0) == b"100.00 150.00\n"


def test_loadavg_kernel_decay() -> None:
    la = LoadAverage()
    assert render_loadavg(la, 1, 3, 7) == b"0.00 0.00 0.00 1/3 7\n"
    for _ in range(12):  # one minute of one busy thread
        la.sample(1)
    one, five, fifteen = (float(x) for x in render_loadavg(la, 1, 3, 7).split()[:3])
    assert 0.62 <= one <= 0.64  # 1 - 1/e
    assert five < one and fifteen < five
    assert calc_load(0, 1884, FIXED_1) == 164  # the kernel's first step from idle
    for _ in range(200):
        la.sample(0)
    assert render_loadavg(la, 0, 1, 7).startswith(b"0.00 ")


def test_diskstats_v1_and_v2_agree() -> None:
    host = (HOST / "diskstats").read_bytes()
    v1 = render_diskstats(host, read_io(V1_REF))
    v2 = render_diskstats(host, read_io(V2_REF))
    for out in (v1, v2):
        lines = out.decode().splitlines()
        assert len(lines) == 1  # sda only; unused dm-0 and the partition omitted
        f = lines[0].split()
        assert f[:3] == ["8", "0", "sda"] and len(f) == 20
        assert f[3] == "120" and f[5] == str(4915200 // 512)
        assert f[7] == "30" and f[9] == str(1048576 // 512)
        assert f[14] == "2" and f[16] == "16"


def test_swaps() -> None:
    host_swaps = b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/zram0 partition\t..."
    host_mem = (FIX / "meminfo_host_swap").read_bytes()
    mem = read_memory(
        resolve_spec_path(
            "/kubepods/pod1/ctr-a", Hierarchies(v1={"memory": FIX / "cgroup_v1/memory"})
        )
    )
    out = render_swaps(host_swaps, host_mem, mem).decode().splitlines()
    assert out[0].startswith("Filename")
    assert len(out) == 2 and out[1].startswith("none" + " " * 36 + "virtual\t\t")
    noswap = read_memory(resolve_spec_path("/noswap.slice", V2))
    assert render_swaps(host_swaps, host_mem, noswap).count(b"\n") == 1


def test_slabinfo() -> None:
    host = b"slabinfo - version: 2.1\n# name <active_objs>\nkmalloc-8 1 2 8 512 1\n"
    assert render_slabinfo(host, None) == b"slabinfo - version: 2.1\n# name <active_objs>\n"
    assert render_slabinfo(host, b"") == render_slabinfo(host, None)
    own = b"slabinfo - version: 2.1\nfoo 1 1 1 1 1\n"
    assert render_slabinfo(host, own) == own


def test_last_pid_is_the_youngest_threads_after_host_pids_wrap(tmp_path, monkeypatch) -> None:
    """Host tids wrap (pid_max 32768 here): the highest host tid can be an old thread. The
    last pid is the youngest thread's (by start time), in the container's namespace."""
    import procfs.tasks as tasks

    threads = {31000: (5, "1"), 120: (900, "7"), 110: (800, "6")}  # tid: (start, NSpid inner)
    for tid, (start, ns) in threads.items():
        d = tmp_path / str(tid)
        d.mkdir()
        rest = " ".join(["S", *["0"] * 18, str(start), "0"])
        (d / "stat").write_text(f"{tid} (a (b) c) {rest}\n")
        (d / "status").write_text(f"Name:\tx\nNSpid:\t{tid}\t{ns}\n")
    monkeypatch.setattr(tasks, "cgroup_threads", lambda ref: list(threads))
    t = tasks.scan_tasks(None, proc=tmp_path)  # type: ignore[arg-type]
    assert (t.threads, t.last_pid) == (3, 7)
    # /proc/stat's scan reads every status for ctxt: the youngest's is reused, same answer
    t = tasks.scan_tasks(None, ctxt=True, proc=tmp_path)  # type: ignore[arg-type]
    assert (t.threads, t.last_pid) == (3, 7)
