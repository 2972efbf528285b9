"""Spec rewrite: the view's binds are appended after /proc, never over a user's own mount."""

from __future__ import annotations

import json

import pytest

from shim.oci import spec


def _spec(*mounts: dict) -> dict:
    return {
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}, *mounts],
        "linux": {"cgroupsPath": "/default/c1", "namespaces": [{"type": "pid"}, {"type": "mount"}]},
        "annotations": {"io.kubernetes.cri.sandbox-id": "pod1"},
    }


def test_bind_is_appended_after_proc_read_only() -> None:
    s = _spec()
    added = spec.add_view_mounts(s, {"/proc/meminfo": "/run/v/c1/proc/meminfo"})
    assert added == ["/proc/meminfo"]
    assert s["mounts"][0]["destination"] == "/proc"
    bind = s["mounts"][-1]
    assert bind == {
        "destination": "/proc/meminfo",
        "type": "bind",
        "source": "/run/v/c1/proc/meminfo",
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
    }


def test_users_own_mount_is_left_alone() -> None:
    own = {"destination": "/proc/meminfo", "type": "bind", "source": "/var/lib/lxcfs/proc/meminfo"}
    s = _spec(own)
    assert "/proc/meminfo" not in spec.wanted_files(s)
    assert "/proc/cpuinfo" in spec.wanted_files(s)
    assert spec.add_view_mounts(s, {"/proc/meminfo": "/run/v/c1/proc/meminfo"}) == []
    assert s["mounts"][-1] is own


def test_paths_runc_refuses_are_rejected() -> None:
    with pytest.raises(spec.SpecError, match="/proc/zoneinfo"):
        spec.add_view_mounts(_spec(), {"/proc/zoneinfo": "/x"})


def test_late_files_are_left_to_the_shim() -> None:
    s = _spec()
    added = spec.add_view_mounts(
        s, {"/proc/meminfo": "/v/m", "/proc/vmstat": "/v/vm", "/proc/pressure/io": "/v/io"}
    )
    assert added == ["/proc/meminfo"]
    assert "/proc/vmstat" not in {m["destination"] for m in s["mounts"]}


def test_spec_queries() -> None:
    s = _spec()
    assert spec.cgroups_path(s) == "/default/c1"
    assert spec.has_private_pid_ns(s)
    s["linux"]["namespaces"][0]["path"] = "/proc/1/ns/pid"
    assert not spec.has_private_pid_ns(s)
    assert spec.annotations(s)["io.kubernetes.cri.sandbox-id"] == "pod1"


def test_load_reports_what_is_wrong(tmp_path) -> None:
    with pytest.raises(spec.SpecError, match="no such file"):
        spec.load(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(spec.SpecError, match="malformed JSON"):
        spec.load(str(tmp_path))
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(spec.SpecError, match="not a JSON object"):
        spec.load(str(tmp_path))


def test_save_round_trips(tmp_path) -> None:
    s = _spec()
    spec.save(str(tmp_path), s)
    assert json.loads((tmp_path / "config.json").read_text()) == s


def _sys_spec(annotations: dict[str, str] | None = None) -> dict:
    s = _spec({"destination": "/sys", "type": "sysfs", "source": "sysfs"})
    s["annotations"].update(annotations or {})
    return s


def test_defaults_are_every_file() -> None:
    assert spec.wanted_files(_sys_spec()) == list(spec.DEFAULT_FILES)
    assert set(spec.DEFAULT_FILES) <= spec.PROC_ALLOWED | spec.SYS_FILES | spec.LATE_FILES
    assert len(spec.DEFAULT_FILES) == 13


def test_no_sysfs_no_cpu_online() -> None:
    # Binding onto /sys/... without a sysfs there would create the path in the image.
    assert "/sys/devices/system/cpu/online" not in spec.wanted_files(_spec())
    assert "/proc/stat" in spec.wanted_files(_spec())


@pytest.mark.parametrize(
    ("value", "files"),
    [
        ("meminfo,cpuinfo", ["/proc/meminfo", "/proc/cpuinfo"]),
        (
            "meminfo cpu-online /proc/uptime",
            ["/proc/meminfo", "/sys/devices/system/cpu/online", "/proc/uptime"],
        ),
        ("", []),
        ("stat,stat", ["/proc/stat"]),
    ],
)
def test_files_annotation_replaces_defaults(value: str, files: list[str]) -> None:
    assert spec.wanted_files(_sys_spec({spec.ANNOTATION_FILES: value})) == files


@pytest.mark.parametrize("value", ["true", "all", "TRUE", "*"])
def test_disable_all(value: str) -> None:
    assert spec.wanted_files(_sys_spec({spec.ANNOTATION_DISABLE: value})) == []


def test_disable_some_and_combined_with_files() -> None:
    s = _sys_spec({spec.ANNOTATION_DISABLE: "loadavg, /proc/slabinfo"})
    got = spec.wanted_files(s)
    assert "/proc/loadavg" not in got and "/proc/slabinfo" not in got
    assert len(got) == 11
    s = _sys_spec({spec.ANNOTATION_FILES: "meminfo,stat", spec.ANNOTATION_DISABLE: "stat"})
    assert spec.wanted_files(s) == ["/proc/meminfo"]
    assert spec.wanted_files(_sys_spec({spec.ANNOTATION_DISABLE: "false"})) == list(
        spec.DEFAULT_FILES
    )


@pytest.mark.parametrize("key", [spec.ANNOTATION_FILES, spec.ANNOTATION_DISABLE])
def test_unknown_names_fail_loudly(key: str) -> None:
    with pytest.raises(spec.SpecError, match=f"{key}: unknown file 'memnifo'"):
        spec.wanted_files(_sys_spec({key: "memnifo"}))
    with pytest.raises(spec.SpecError, match="unknown file '/proc/zoneinfo'"):
        spec.wanted_files(_sys_spec({key: "/proc/zoneinfo"}))
