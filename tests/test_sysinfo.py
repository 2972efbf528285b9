"""Unit tests: the seccomp profile merge, the annotation switch, the sysinfo struct."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util

import pytest

from procfs import sysinfo
from procfs.container import Container
from shim.oci import seccomp as seccomp_profile
from shim.oci import spec
from shim.task import seccomp_notify

LISTENER = "/run/containerd-shim-lxcfs/abc/sysinfo.sock"
NOTIFY = {"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}


def test_no_profile_gets_an_allow_all_one():
    oci: dict = {"linux": {}}
    assert seccomp_profile.notify_sysinfo(oci, LISTENER)
    assert oci["linux"]["seccomp"] == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": LISTENER,
        "syscalls": [NOTIFY],
    }


def test_allow_list_profile_keeps_every_other_rule():
    rules = [
        {"names": ["read", "sysinfo", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["sysinfo"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["ptrace"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}],
        },
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ]
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": copy.deepcopy(rules),
    }
    oci = {"linux": {"seccomp": profile}}
    assert seccomp_profile.notify_sysinfo(oci, LISTENER)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    assert profile["listenerPath"] == LISTENER
    assert profile["syscalls"] == [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        rules[2],
        rules[3],
        NOTIFY,
    ]


@pytest.mark.parametrize(
    "profile",
    [
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO"}],
        },
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
        },
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/their/agent.sock",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}],
        },
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["sysinfo"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}],
                }
            ],
        },
    ],
    ids=["denied", "not-allowed", "own-listener", "conditional"],
)
def test_profile_that_decides_sysinfo_is_left_alone(profile):
    oci = {"linux": {"seccomp": copy.deepcopy(profile)}}
    assert not seccomp_profile.notify_sysinfo(oci, LISTENER)
    assert oci["linux"]["seccomp"] == profile


def test_listener_path_too_long():
    oci: dict = {"linux": {}}
    assert not seccomp_profile.notify_sysinfo(oci, "/" + "x" * 200)
    assert "seccomp" not in oci["linux"]


@pytest.mark.parametrize(
    ("notes", "on"),
    [
        ({}, True),
        ({spec.ANNOTATION_DISABLE: "false"}, True),
        ({spec.ANNOTATION_DISABLE: "true"}, False),
        ({spec.ANNOTATION_DISABLE: "loadavg, sysinfo"}, False),
        ({spec.ANNOTATION_DISABLE: "loadavg"}, True),
        ({spec.ANNOTATION_FILES: "meminfo"}, False),
        ({spec.ANNOTATION_FILES: "meminfo,sysinfo"}, True),
    ],
)
def test_annotations_switch_sysinfo(notes, on):
    oci = {"annotations": notes}
    assert spec.sysinfo_selected(oci) is on
    assert "sysinfo" not in spec.selected_files(oci)


def test_typo_still_fails():
    with pytest.raises(spec.SpecError, match="sysinfo"):
        spec.sysinfo_selected({"annotations": {spec.ANNOTATION_DISABLE: "sysinf"}})


MEMINFO = b"""MemTotal:         262144 kB
MemFree:          200000 kB
MemAvailable:     250000 kB
Buffers:             100 kB
Cached:             5000 kB
Shmem:                12 kB
SwapTotal:         65536 kB
SwapFree:          65000 kB
"""


def test_render_from_the_files():
    v = sysinfo.render_sysinfo(MEMINFO, b"12.01 3.00\n", b"0.50 0.25 1.00 1/7 42\n")
    assert v.totalram == 262144 * 1024 and v.freeram == 200000 * 1024
    assert v.bufferram == 100 * 1024 and v.sharedram == 12 * 1024
    assert (v.totalswap, v.freeswap) == (65536 * 1024, 65000 * 1024)
    assert v.uptime == 13  # rounded up, as the kernel does
    assert v.loads == (1 << 15, 1 << 14, 1 << 16)
    assert v.procs == 7
    # with the view's fixed-point averages: no two-decimal rounding
    v = sysinfo.render_sysinfo(MEMINFO, b"1.00 0\n", b"0.50 0.25 1.00 1/7 42\n", [1024, 512, 2048])
    assert v.loads == (1 << 15, 1 << 14, 1 << 16)


class _CSysinfo(ctypes.Structure):  # glibc's struct sysinfo, as a C program sees it
    _fields_ = [
        ("uptime", ctypes.c_long),
        ("loads", ctypes.c_ulong * 3),
        ("totalram", ctypes.c_ulong),
        ("freeram", ctypes.c_ulong),
        ("sharedram", ctypes.c_ulong),
        ("bufferram", ctypes.c_ulong),
        ("totalswap", ctypes.c_ulong),
        ("freeswap", ctypes.c_ulong),
        ("procs", ctypes.c_ushort),
        ("pad", ctypes.c_ushort),
        ("totalhigh", ctypes.c_ulong),
        ("freehigh", ctypes.c_ulong),
        ("mem_unit", ctypes.c_uint),
        ("_f", ctypes.c_char * (20 - 2 * ctypes.sizeof(ctypes.c_long) - 4)),
    ]


@pytest.mark.skipif(not seccomp_notify.supported(), reason="64-bit layouts only")
def test_packed_struct_matches_c_layout():
    v = sysinfo.render_sysinfo(MEMINFO, b"12.01 3.00\n", b"0.50 0.25 1.00 1/7 42\n")
    data = v.pack()
    assert len(data) == ctypes.sizeof(_CSysinfo) == sysinfo.SIZE
    c = _CSysinfo.from_buffer_copy(data)
    assert (c.uptime, c.totalram, c.freeswap, c.procs, c.mem_unit) == (
        13,
        262144 * 1024,
        65000 * 1024,
        7,
        1,
    )
    assert list(c.loads) == [1 << 15, 1 << 14, 1 << 16]


def test_host_view_equals_the_kernels():
    """A container whose cgroup is unknown gets the host's files: so its sysinfo = the host's."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    host = _CSysinfo()
    assert libc.sysinfo(ctypes.byref(host)) == 0
    ours = sysinfo.produce_sysinfo(Container("x", None))
    assert ours.totalram == host.totalram * host.mem_unit
    assert ours.totalswap == host.totalswap * host.mem_unit
    assert abs(ours.uptime - host.uptime) <= 1
