"""shim/oci/plan.py: every decision Create takes from config.json, made in one pure call."""

from __future__ import annotations

import copy

import pytest

from shim.oci import plan as oci_plan
from shim.oci import spec

LISTENER = "/run/containerd/s/abc/sysinfo.sock"
BIND_FILES = tuple(f for f in spec.DEFAULT_FILES if f not in spec.LATE_FILES)
LATE = tuple(f for f in spec.DEFAULT_FILES if f in spec.LATE_FILES)


def _spec(annotations: dict[str, str] | None = None, **linux: object) -> dict:
    return {
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
        ],
        "linux": {"cgroupsPath": "/default/c1", "namespaces": [{"type": "pid"}], **linux},
        "annotations": annotations or {},
    }


def test_defaults_bind_every_file_and_answer_sysinfo():
    oci = _spec()
    before = copy.deepcopy(oci)
    p = oci_plan.plan(oci, LISTENER)
    assert oci == before  # pure
    assert p.cgroups_path == "/default/c1"
    assert p.files == spec.DEFAULT_FILES
    assert p.binds == BIND_FILES
    assert p.late == LATE == tuple(sorted(spec.LATE_FILES, key=spec.DEFAULT_FILES.index))
    assert (p.sysinfo, p.sysinfo_listener) == ("shim", LISTENER)
    assert p.private_pid_ns


def test_rewrite_executes_the_plan():
    oci = _spec()
    p = oci_plan.plan(oci, LISTENER)
    sources = {f: "/view/c1" + f for f in p.files}
    oci_plan.rewrite(oci, p, sources)
    binds = [m for m in oci["mounts"] if m["type"] == "bind"]
    assert [m["destination"] for m in binds] == list(p.binds)
    assert all(m["source"] == sources[m["destination"]] for m in binds)
    assert not set(p.late) & {m["destination"] for m in oci["mounts"]}
    assert oci["linux"]["seccomp"]["listenerPath"] == LISTENER


def test_no_listener_leaves_sysinfo_to_the_kernel():
    oci = _spec()
    p = oci_plan.plan(oci, None)
    assert (p.sysinfo, p.sysinfo_listener) == ("unavailable", "")
    oci_plan.rewrite(oci, p, {f: "/v" + f for f in p.files})
    assert "seccomp" not in oci["linux"]


@pytest.mark.parametrize(
    ("notes", "files", "sysinfo"),
    [
        ({spec.ANNOTATION_DISABLE: "true"}, (), "annotations"),
        ({spec.ANNOTATION_DISABLE: "sysinfo"}, spec.DEFAULT_FILES, "annotations"),
        ({spec.ANNOTATION_FILES: "meminfo"}, ("/proc/meminfo",), "annotations"),
        (
            {spec.ANNOTATION_FILES: "meminfo,sysinfo,vmstat"},
            ("/proc/meminfo", "/proc/vmstat"),
            "shim",
        ),
    ],
)
def test_annotations_choose_files_and_sysinfo(notes, files, sysinfo):
    p = oci_plan.plan(_spec(notes), LISTENER)
    assert p.files == files
    assert p.sysinfo == sysinfo
    assert set(p.binds) | set(p.late) == set(files)


def test_the_users_profile_decides_sysinfo():
    deny = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO"}],
    }
    oci = _spec(seccomp=deny)
    p = oci_plan.plan(oci, LISTENER)
    assert (p.sysinfo, p.sysinfo_listener) == ("profile", "")
    oci_plan.rewrite(oci, p, {f: "/v" + f for f in p.files})
    assert oci["linux"]["seccomp"] == deny


def test_the_users_own_mounts_and_a_missing_sysfs_are_left_alone():
    oci = _spec()
    oci["mounts"] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/proc/meminfo", "type": "bind", "source": "/mine"},
    ]
    p = oci_plan.plan(oci, LISTENER)
    assert "/proc/meminfo" not in p.files
    assert "/sys/devices/system/cpu/online" not in p.files


def test_no_pid_namespace_and_no_cgroups_path():
    oci = _spec()
    oci["linux"] = {"namespaces": [{"type": "pid", "path": "/proc/1/ns/pid"}]}
    p = oci_plan.plan(oci, LISTENER)
    assert not p.private_pid_ns
    assert p.cgroups_path is None


def test_an_annotation_typo_fails_the_plan():
    with pytest.raises(spec.SpecError, match="unknown file 'memnifo'"):
        oci_plan.plan(_spec({spec.ANNOTATION_FILES: "memnifo"}), LISTENER)
