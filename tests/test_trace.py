"""shim/trace.py marks and bench.profile's reading of them (the lifecycle critical path)."""

from __future__ import annotations

import os
import shutil
import subprocess

from bench.profile import format_trace
from shim import trace


def test_mark_is_silent_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(trace.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    trace.mark("nothing")
    assert list(tmp_path.iterdir()) == []


def test_mark_appends_time_pid_label(tmp_path, monkeypatch):
    out = tmp_path / "trace.log"
    monkeypatch.setenv(trace.ENV, str(out))
    trace.mark("a: one")
    trace.mark("b: two words")
    lines = out.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["a: one", "b: two words"]
    stamps = [int(line.split()[0]) for line in lines]
    assert stamps == sorted(stamps) and all(int(line.split()[1]) == os.getpid() for line in lines)


def test_the_installed_shim_marks_through_its_launcher(tmp_path):
    shim = shutil.which("containerd-shim-lxcfs-v2")
    assert shim, "containerd-shim-lxcfs-v2 not on PATH (install.sh puts it there)"
    out = tmp_path / "trace.log"
    r = subprocess.run(
        [shim, "-v"],
        env={**os.environ, trace.ENV: str(out)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_text().split(" ", 2)[2] == "serve: main\n"


def test_format_trace_medians_per_step():
    ms = 1_000_000
    text = "\n".join(
        [
            f"{0 * ms} 1 ctr run a",
            f"{10 * ms} 2 start: main",
            f"{30 * ms} 3 rpc Create",
            f"{31 * ms} 3 rpc Connect",
            f"{32 * ms} 3 rpc Connect",
            f"{50 * ms} 1 ctr exited",
            f"{100 * ms} 1 ctr run b",
            f"{114 * ms} 2 start: main",
            f"{130 * ms} 3 rpc Create",
            f"{131 * ms} 3 rpc Connect",
            f"{133 * ms} 3 rpc Connect",
            f"{160 * ms} 1 ctr exited",
        ]
    )
    table = format_trace(text, 40.0)
    assert "2 runs" in table and "55.0 ms vs 40.0 ms" in table
    rows = [line.split(None, 2) for line in table.splitlines()[2:]]
    assert [r[2] for r in rows] == [
        "start: main",
        "rpc Create",
        "rpc Connect",
        "rpc Connect #2",
        "ctr exited",
    ]
    assert rows[0][:2] == ["12.0", "+12.0"] and rows[3][:2] == ["32.5", "+1.5"]
