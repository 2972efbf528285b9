"""Where a process's cgroup files are, on cgroup v1 (hybrid) and v2 hosts alike.

The suites run on the v1 hybrid development host and inside the cgroup v2 guest
(tests/test_guest_cgroup_v2.py); tests that read the kernel's files directly use these.
Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def unified() -> bool:
    """True on a cgroup v2-only host (/sys/fs/cgroup is the unified hierarchy)."""
    return (ROOT / "cgroup.controllers").exists()


def cgroup_dir(pid: int | str, controller: str) -> Path:
    """The directory holding `controller`'s files for `pid` (v2: its one unified cgroup)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        if unified() and hid == "0":
            return ROOT / path.lstrip("/")
        if controller in ctrls.split(","):
            return ROOT / controller / path.lstrip("/")
    raise LookupError(f"pid {pid}: no {controller} cgroup in {lines}")


def ctr_cgroup(namespace: str, cid: str, controller: str) -> Path:
    """The cgroup containerd's default spec gives container `cid` (cgroupfs driver)."""
    if unified():
        return ROOT / namespace / cid
    return ROOT / controller / namespace / cid


def memory_limit(d: Path) -> int | None:
    """memory.max (v2) or memory.limit_in_bytes (v1); None = unlimited."""
    name = "memory.max" if unified() else "memory.limit_in_bytes"
    text = (d / name).read_text().strip()
    return None if text == "max" else int(text)


def in_cgroup(pid: int | str, group: str, controller: str) -> bool:
    """Whether pid's `controller` cgroup is exactly `group` (path from the hierarchy root)."""
    return cgroup_dir(pid, controller) == (
        ROOT / group.lstrip("/") if unified() else ROOT / controller / group.lstrip("/")
    )


def has_pids(d: Path) -> bool:
    name = "cgroup.procs" if unified() else "tasks"
    try:
        return bool((d / name).read_text().strip())
    except FileNotFoundError:
        return False
