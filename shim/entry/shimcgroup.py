"""ShimCgroup: `start` moves the new serving process into that cgroup, as the Go shim.

Stdlib only (runs inside `start`). The cgroup comes from any of the runtime option types
(shim/options.py: runc Options field 3, legacy CreateOptions field 9, `ShimCgroup` in a
runtimeoptions TOML). On cgroup v1 the pid joins the path in every hierarchy where it exists
(containerd/cgroups `Load(V1, StaticPath(p))` then `Add`); on v2 the one cgroup2 directory.
"""

from __future__ import annotations

import os


def _cgroup_mounts() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split(" ", 1)[0]
            if fstype in ("cgroup", "cgroup2") and left.split(" ")[3] == "/":
                out.append(left.split(" ")[4])
    return out


def _targets(cgroup: str) -> list[str]:
    """cgroup.procs of `cgroup` in every hierarchy that has it."""
    return [
        procs
        for mount in _cgroup_mounts()
        if os.path.exists(procs := os.path.join(mount, cgroup.lstrip("/"), "cgroup.procs"))
    ]


def check(cgroup: str) -> None:
    """Refuse a cgroup that exists nowhere *before* anything is started or bound."""
    if not _targets(cgroup):
        raise OSError(f"failed to load cgroup {cgroup}: it does not exist")


def apply(pid: int, cgroup: str) -> None:
    """Move `pid` into `cgroup`; OSError if the cgroup exists in no hierarchy."""
    targets = _targets(cgroup)
    if not targets:
        raise OSError(f"failed to load cgroup {cgroup}: it does not exist")
    for procs in targets:
        with open(procs, "w") as f:
            f.write(str(pid))
