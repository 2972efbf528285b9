"""Options.ShimCgroup: `start` moves the new serving process into that cgroup, as the Go shim.

Stdlib only (runs inside `start`). runc Options arrive as the Any on start's stdin; field 3
is `shim_cgroup`. On cgroup v1 the pid joins the path in every hierarchy where it exists
(containerd/cgroups `Load(V1, StaticPath(p))` then `Add`); on v2 the one cgroup2 directory.
"""

from __future__ import annotations

import os

from shim import wire

_RUNC_OPTIONS = "containerd.runc.v1.Options"
_RUNTIME_OPTIONS = "runtimeoptions.v1.Options"


def from_options(raw: bytes) -> str:
    """`shim_cgroup` of a runc Options Any, or `ShimCgroup` of a runtimeoptions TOML; else ""."""
    if not raw:
        return ""
    try:
        type_url, value = wire.unpack_any(raw)
        name = type_url.rsplit("/", 1)[-1]
        fields = dict(wire.fields(value))
        if name == _RUNC_OPTIONS:
            field = fields.get(3, b"")
            return field.decode() if isinstance(field, bytes) else ""
        if name == _RUNTIME_OPTIONS:
            import tomllib  # only runtimeoptions configs need it: ~8 ms off every `start`

            path, body = fields.get(2, b""), fields.get(3, b"")
            if isinstance(body, bytes) and body:
                table = tomllib.loads(body.decode())
            elif isinstance(path, bytes) and path:
                with open(path.decode(), "rb") as f:
                    table = tomllib.load(f)
            else:
                return ""
            value = {k.replace("_", "").lower(): v for k, v in table.items()}.get("shimcgroup")
            return value if isinstance(value, str) else ""
    except (OSError, ValueError, UnicodeDecodeError):
        return ""
    return ""


def _cgroup_mounts() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split(" ", 1)[0]
            if fstype in ("cgroup", "cgroup2") and left.split(" ")[3] == "/":
                out.append(left.split(" ")[4])
    return out


def check(cgroup: str) -> None:
    """OSError unless `cgroup` exists in some hierarchy: `start` checks before it launches a
    shim, rather than killing one that may already have mounted its view."""
    if not any(os.path.exists(os.path.join(m, cgroup.lstrip("/"), "cgroup.procs"))
               for m in _cgroup_mounts()):
        raise OSError(f"failed to load cgroup {cgroup}: it does not exist")


def apply(pid: int, cgroup: str) -> None:
    """Move `pid` into `cgroup`; OSError if the cgroup exists in no hierarchy."""
    joined = 0
    for mount in _cgroup_mounts():
        procs = os.path.join(mount, cgroup.lstrip("/"), "cgroup.procs")
        if os.path.exists(procs):
            with open(procs, "w") as f:
                f.write(str(pid))
            joined += 1
    if not joined:
        raise OSError(f"failed to load cgroup {cgroup}: it does not exist")
