"""Spec rewrite: the view's binds are appended after /proc, never over a user's own mount."""

from __future__ import annotations

import json

import pytest

from shim import spec


def _spec(*mounts: dict) -> dict:
    return {
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}, *mounts],
        "linux": {"cgroupsPath": "/default/c1",
                  "namespaces": [{"type": "pid"}, {"type": "mount"}]},
        "annotations": {"io.kubernetes.cri.sandbox-id": "pod1"},
    }


def test_bind_is_appended_after_proc_read_only() -> None:
    s = _spec()
    added = spec.add_view_mounts(s, {"/proc/meminfo": "/run/v/c1/proc/meminfo"})
    assert added == ["/proc/meminfo"]
    assert s["mounts"][0]["destination"] == "/proc"
    bind = s["mounts"][-1]
    assert bind == {"destination": "/proc/meminfo", "type": "bind",
                    "source": "/run/v/c1/proc/meminfo",
                    "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}


def test_users_own_mount_is_left_alone() -> None:
    own = {"destination": "/proc/meminfo", "type": "bind", "source": "/var/lib/lxcfs/proc/meminfo"}
    s = _spec(own)
    assert spec.wanted_files(s) == []
    assert spec.add_view_mounts(s, {"/proc/meminfo": "/run/v/c1/proc/meminfo"}) == []
    assert s["mounts"][-1] is own


def test_paths_runc_refuses_are_rejected() -> None:
    with pytest.raises(spec.SpecError, match="/proc/pressure/cpu"):
        spec.add_view_mounts(_spec(), {"/proc/pressure/cpu": "/x"})


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
