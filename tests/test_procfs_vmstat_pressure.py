"""Fixture tests of the /proc/vmstat and /proc/pressure/* renderers (cgroup v1 and v2)."""

from __future__ import annotations

from pathlib import Path

from procfs.readers import parse_flat_keyed
from procfs.renderers.pressure import render_pressure
from procfs.renderers.vmstat import VmstatHistory, render_vmstat

FIXTURES = Path(__file__).parent / "fixtures"
HOST = (FIXTURES / "host" / "vmstat").read_bytes()
V1_STAT = parse_flat_keyed(
    (FIXTURES / "cgroup_v1/memory/kubepods/pod1/ctr-a/memory.stat").read_text()
)
V2_STAT = parse_flat_keyed(
    (
        FIXTURES / "cgroup_v2/kubepods.slice/kubepods-pod1.slice/"
        "cri-containerd-abc.scope/memory.stat"
    ).read_text()
)
PAGE = 4096


def values(text: bytes) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (ln.split() for ln in text.splitlines())}


def test_v2_names_units_and_order():
    out = render_vmstat(HOST, V2_STAT, 2, 100 * PAGE, VmstatHistory(), PAGE)
    v = values(out)
    assert list(v) == list(values(HOST))  # the host's lines, in its order
    assert v["nr_free_pages"] == 100
    assert v["nr_anon_pages"] == V2_STAT["anon"] // PAGE
    assert v["nr_file_pages"] == V2_STAT["file"] // PAGE
    assert v["nr_kernel_stack"] == V2_STAT["kernel_stack"] // 1024  # KiB, as the kernel
    assert v["nr_page_table_pages"] == V2_STAT["pagetables"] // PAGE
    assert v["nr_anon_transparent_hugepages"] == V2_STAT["anon_thp"] // (2 << 20)
    assert v["pgfault"] == V2_STAT["pgfault"] and v["pgmajfault"] == V2_STAT["pgmajfault"]
    assert v["workingset_refault_file"] == V2_STAT["workingset_refault_file"]
    # the cgroup does not count these: 0, never the host's
    assert v["numa_hit"] == 0 and v["pgpgin"] == 0 and v["pswpin"] == 0


def test_v1_totals():
    v = values(render_vmstat(HOST, V1_STAT, 1, 0, VmstatHistory(), PAGE))
    assert v["nr_anon_pages"] == V1_STAT["total_rss"] // PAGE
    assert v["nr_file_pages"] == V1_STAT["total_cache"] // PAGE
    assert v["pgpgin"] == V1_STAT["total_pgpgin"] and v["pgfault"] == V1_STAT["total_pgfault"]
    assert v["nr_kernel_stack"] == 0  # v1 has no such count


def test_counters_never_go_back():
    history = VmstatHistory()
    first = values(render_vmstat(HOST, V2_STAT, 2, 0, history, PAGE))
    lower = {**V2_STAT, "pgfault": 1, "anon": 0}
    second = values(render_vmstat(HOST, lower, 2, 0, history, PAGE))
    assert second["pgfault"] == first["pgfault"]  # counter: kept
    assert second["nr_anon_pages"] == 0  # gauge: follows the cgroup


def test_pressure_in_the_host_shape():
    host = (FIXTURES / "host" / "pressure_cpu").read_bytes()
    cg = b"some avg10=1.50 avg60=0.20 avg300=0.05 total=12345\n"  # no full line (< 5.13)
    assert render_pressure(host, cg) == (
        b"some avg10=1.50 avg60=0.20 avg300=0.05 total=12345\n"
        b"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    both = cg + b"full avg10=0.10 avg60=0.00 avg300=0.00 total=99\n"
    assert render_pressure(host, both) == both
