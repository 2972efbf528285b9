"""Pure procfs pieces: cgroup resolution, readers on fixture trees, the meminfo renderer."""

from __future__ import annotations

from pathlib import Path

import pytest

from procfs.cgroups import (
    UNIFIED,
    CgroupRef,
    Hierarchies,
    expand_slice,
    parse_mountinfo,
    parse_proc_cgroup,
    resolve_spec_path,
    systemd_to_path,
)
from procfs.readers import read_memory
from procfs.renderers import render_meminfo
from procfs.renderers.meminfo import parse_meminfo
from procfs.snapshot import MemorySnapshot, MemoryStat

FIXTURES = Path(__file__).parent / "fixtures"
V1 = Hierarchies(v1={"memory": FIXTURES / "cgroup_v1" / "memory"})
V2 = Hierarchies(v2=FIXTURES / "cgroup_v2")
HOST = (FIXTURES / "meminfo_host").read_bytes()
HOST_SWAP = (FIXTURES / "meminfo_host_swap").read_bytes()

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:32 /kubepods /mnt/sub rw,relatime - cgroup cgroup rw,memory
"""
UNIFIED_MOUNTINFO = (
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)


def meminfo(ref: CgroupRef, host: bytes = HOST_SWAP) -> dict[str, int]:
    return parse_meminfo(render_meminfo(host, read_memory(ref)))


# --- hierarchy discovery and cgroup resolution ------------------------------------------------


def test_mountinfo_hybrid() -> None:
    h = parse_mountinfo(HYBRID_MOUNTINFO)
    assert h.v1["memory"] == Path("/sys/fs/cgroup/memory")  # the bind of /kubepods is ignored
    assert h.v1["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert h.v1["name=systemd"] == Path("/sys/fs/cgroup/systemd")
    assert "xattr" not in h.v1 and "rw" not in h.v1
    assert h.v2 == Path("/sys/fs/cgroup/unified")
    assert not h.unified
    assert h.mountpoint("memory") == Path("/sys/fs/cgroup/memory")
    assert h.mountpoint("io") == Path("/sys/fs/cgroup/unified")


def test_mountinfo_unified() -> None:
    h = parse_mountinfo(UNIFIED_MOUNTINFO)
    assert h.v1 == {} and h.v2 == Path("/sys/fs/cgroup") and h.unified


def test_proc_cgroup_parsing() -> None:
    text = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/x\n0::/y.scope\n"
    assert parse_proc_cgroup(text) == {
        "cpu": "/docker/abc",
        "cpuacct": "/docker/abc",
        "memory": "/docker/abc",
        "name=systemd": "/x",
        UNIFIED: "/y.scope",
    }


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("-.slice", "/"),
        ("system.slice", "/system.slice"),
        ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
        (
            "kubepods-burstable-pod12.slice",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice",
        ),
    ],
)
def test_expand_slice(name: str, path: str) -> None:
    assert expand_slice(name) == path


@pytest.mark.parametrize("bad", ["a--b.slice", "-a.slice", "a-.slice", "a.scope", "a/b.slice"])
def test_expand_slice_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        expand_slice(bad)


def test_systemd_forms() -> None:
    assert systemd_to_path("system.slice:cri-containerd:abc") == (
        "/system.slice/cri-containerd-abc.scope"
    )
    assert systemd_to_path("kubepods-besteffort-pod1.slice:cri-containerd:abc") == (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
        "/cri-containerd-abc.scope"
    )
    assert systemd_to_path(":docker:abc") == "/system.slice/docker-abc.scope"
    assert systemd_to_path("user.slice::abc") == "/user.slice/abc.scope"
    assert systemd_to_path("machine.slice::sub.slice") == "/machine.slice/sub.slice"


def test_resolve_spec_paths() -> None:
    h = Hierarchies(v1={"memory": Path("/m"), "cpu": Path("/c")}, v2=Path("/u"))
    ref = resolve_spec_path("/kubepods/pod1/../pod2/ctr", h)
    assert ref.path("memory") == ref.path("cpu") == ref.path("io") == "/kubepods/pod2/ctr"
    assert ref.dir("memory") == Path("/m/kubepods/pod2/ctr")
    assert ref.version("memory") == 1 and ref.version("io") == 2

    own = {"memory": "/shim", "cpu": "/", UNIFIED: "/user.slice/s.scope"}
    rel = resolve_spec_path("ctr-1", h, own)
    assert rel.dir("memory") == Path("/m/shim/ctr-1")
    assert rel.dir("cpu") == Path("/c/ctr-1")
    assert rel.dir("io") == Path("/u/user.slice/s.scope/ctr-1")
    with pytest.raises(ValueError):
        resolve_spec_path("../escape", h, own)

    sd = resolve_spec_path("kubepods-pod1.slice:cri-containerd:abc", V2)
    assert sd.dir("memory") == (
        FIXTURES / "cgroup_v2/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope"
    )


def test_ancestors_stop_at_root() -> None:
    ref = resolve_spec_path("/kubepods/pod1/ctr-a", V1)
    root = FIXTURES / "cgroup_v1" / "memory"
    assert ref.ancestors("memory") == [
        root / "kubepods/pod1/ctr-a",
        root / "kubepods/pod1",
        root / "kubepods",
        root,
    ]
    assert resolve_spec_path("/", V1).ancestors("memory") == [root]


# --- readers ----------------------------------------------------------------------------------


def test_read_v1_limit_on_ancestor_and_swap() -> None:
    snap = read_memory(resolve_spec_path("/kubepods/pod1/ctr-a", V1))
    assert snap.limit == 512 * 2**20
    assert snap.usage == 100 * 2**20
    assert snap.swap_accounted and snap.swap_limit == 2**30
    assert snap.swap_usage == 16 * 2**20
    assert snap.swappiness == 60
    # exact keys: total_rss does not shadow total_rss_huge
    assert snap.stat.anon_huge == 4 * 2**20
    assert snap.stat.cache == 50 * 2**20 and snap.stat.mapped_file == 8 * 2**20
    assert snap.stat.slab == 0


def test_read_v1_unlimited_and_noswap() -> None:
    snap = read_memory(resolve_spec_path("/unlimited", V1))
    assert snap.limit is None and snap.swap_limit is None
    noswap = read_memory(resolve_spec_path("/noswap", V1))
    assert noswap.limit == 256 * 2**20 and not noswap.swap_accounted


def test_read_v2_limit_on_ancestor_and_swap() -> None:
    ref = resolve_spec_path("/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope", V2)
    snap = read_memory(ref)
    assert snap.limit == 512 * 2**20
    assert snap.usage == 200 * 2**20
    assert snap.swap_accounted and snap.swap_limit == 256 * 2**20
    assert snap.swap_usage == 16 * 2**20
    assert snap.swappiness is None
    # exact keys: `file` does not swallow `file_mapped`
    assert snap.stat.cache == 100 * 2**20 and snap.stat.mapped_file == 8 * 2**20
    assert snap.stat.slab_reclaimable == 3 * 2**20 and snap.stat.slab == 4 * 2**20


def test_read_v2_unlimited_noswap_swapoff() -> None:
    assert read_memory(resolve_spec_path("/unlimited.slice", V2)).limit is None
    noswap = read_memory(resolve_spec_path("/noswap.slice", V2))
    assert noswap.limit == 256 * 2**20 and not noswap.swap_accounted
    off = read_memory(resolve_spec_path("/swapoff.slice", V2))
    assert off.swap_accounted and off.swap_limit == 0


def test_read_missing_cgroup_raises() -> None:
    with pytest.raises(OSError):
        read_memory(resolve_spec_path("/does-not-exist", V2))


# --- renderer ---------------------------------------------------------------------------------


def test_meminfo_v1() -> None:
    m = meminfo(resolve_spec_path("/kubepods/pod1/ctr-a", V1))
    assert m["MemTotal"] == 524288
    assert m["MemFree"] == 524288 - 102400
    assert m["MemAvailable"] == 524288 - 102400 + (30 + 20) * 1024
    assert m["Buffers"] == 0 and m["SwapCached"] == 0
    assert m["Cached"] == 51200
    assert m["Active"] == 80 * 1024 and m["Inactive"] == 20 * 1024
    assert m["Active(anon)"] == 50 * 1024 and m["Inactive(file)"] == 20 * 1024
    assert m["Unevictable"] == 1024
    assert m["AnonPages"] == 46 * 1024
    assert m["Mapped"] == 8192 and m["Shmem"] == 4096
    assert m["AnonHugePages"] == 4096
    assert m["Dirty"] == 400 and m["Writeback"] == 8
    assert m["Slab"] == m["SReclaimable"] == m["SUnreclaim"] == 0
    assert m["SwapTotal"] == 1048576 and m["SwapFree"] == 1048576 - 16384


def test_meminfo_v2() -> None:
    ref = resolve_spec_path("kubepods-pod1.slice:cri-containerd:abc", V2)
    m = meminfo(ref)
    assert m["MemTotal"] == 524288
    assert m["MemFree"] == 524288 - 204800
    assert m["MemAvailable"] == 524288 - 204800 + (70 + 30 + 3) * 1024
    assert m["Cached"] == 102400 and m["Mapped"] == 8192
    assert m["Slab"] == 4096 and m["SReclaimable"] == 3072 and m["SUnreclaim"] == 1024
    assert m["AnonHugePages"] == 2048
    assert m["Dirty"] == 400 and m["Writeback"] == 8
    assert m["SwapTotal"] == 262144 and m["SwapFree"] == 262144 - 16384


def test_meminfo_passthrough_and_format() -> None:
    out = render_meminfo(HOST_SWAP, read_memory(resolve_spec_path("/noswap.slice", V2)))
    host_lines, lines = HOST_SWAP.splitlines(), out.splitlines()
    assert [ln.split(b":")[0] for ln in lines] == [ln.split(b":")[0] for ln in host_lines]
    host = parse_meminfo(HOST_SWAP)
    m = parse_meminfo(out)
    for key in (
        "KernelStack",
        "PageTables",
        "CommitLimit",
        "VmallocTotal",
        "HugePages_Total",
        "Hugepagesize",
        "DirectMap1G",
        "Mlocked",
    ):
        assert m[key] == host[key]
        assert lines[[ln.split(b":")[0] for ln in lines].index(key.encode())] in host_lines
    assert lines[0] == b"MemTotal:         262144 kB"
    assert all(
        len(ln.split(b" kB")[0]) == 24
        for ln in lines
        if ln.endswith(b" kB") and len(ln.split()[1]) <= 8
    )
    assert out.endswith(b"\n")
    assert m["SwapTotal"] == m["SwapFree"] == 0  # swap not accounted


def test_meminfo_unlimited_is_host() -> None:
    assert render_meminfo(HOST, read_memory(resolve_spec_path("/unlimited", V1))) == HOST
    assert render_meminfo(HOST, read_memory(resolve_spec_path("/unlimited.slice", V2))) == HOST


def test_meminfo_limit_above_host_and_available_capped() -> None:
    host = parse_meminfo(HOST)
    snap = MemorySnapshot(
        limit=10 * host["MemTotal"] * 1024,
        usage=0,
        stat=MemoryStat(active_file=2 * host["MemTotal"] * 1024),
    )
    m = parse_meminfo(render_meminfo(HOST, snap))
    assert m["MemTotal"] == host["MemTotal"]
    assert m["MemAvailable"] == m["MemTotal"]


def test_meminfo_usage_above_limit_clamps() -> None:
    snap = MemorySnapshot(limit=2**20, usage=2**21, stat=MemoryStat())
    m = parse_meminfo(render_meminfo(HOST, snap))
    assert m["MemFree"] == 0 and m["MemAvailable"] == 0


def test_swap_rules() -> None:
    base = {"limit": 2**30, "usage": 0, "stat": MemoryStat(), "swap_accounted": True}
    # swap allowance above the host's swap → host swap
    m = parse_meminfo(render_meminfo(HOST_SWAP, MemorySnapshot(**base, swap_limit=2**40)))
    assert m["SwapTotal"] == 2097148
    # swappiness 0 → only what is already swapped out
    snap = MemorySnapshot(**base, swap_limit=2**30, swap_usage=2**20, swappiness=0)
    m = parse_meminfo(render_meminfo(HOST_SWAP, snap))
    assert m["SwapTotal"] == 1024 and m["SwapFree"] == 0
    # host without swap
    m = parse_meminfo(render_meminfo(HOST, MemorySnapshot(**base, swap_limit=2**30)))
    assert m["SwapTotal"] == m["SwapFree"] == 0
    # v1 swappiness 0 fixture
    m = meminfo(resolve_spec_path("/swappiness0", V1))
    assert m["SwapTotal"] == 8192 and m["SwapFree"] == 0
    # v2 swap.max 0
    m = meminfo(resolve_spec_path("/swapoff.slice", V2))
    assert m["SwapTotal"] == m["SwapFree"] == 0
