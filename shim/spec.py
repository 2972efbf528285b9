"""OCI spec rewrite: bind the container's FUSE view over the files it virtualizes.

Pure functions on the parsed config.json; the service reads and writes the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

#: Paths runc lets a bind mount cover inside /proc (every runc >= 1.0), and sysfs files.
PROC_ALLOWED = frozenset({
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
    "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
})
SYS_FILES = frozenset({"/sys/devices/system/cpu/online"})

#: What the view renders today.
DEFAULT_FILES = ("/proc/meminfo",)


class SpecError(ValueError):
    """config.json is not a spec we can run."""


def load(bundle: str) -> dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = json.load(f)
    except FileNotFoundError as e:
        raise SpecError(f"{path}: no such file") from e
    except ValueError as e:
        raise SpecError(f"{path}: malformed JSON: {e}") from e
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: not a JSON object")
    return spec


def save(bundle: str, spec: Mapping[str, Any]) -> None:
    path = os.path.join(bundle, "config.json")
    tmp = path + ".lxcfs.tmp"
    with open(tmp, "w") as f:
        json.dump(spec, f)
    os.replace(tmp, path)


def annotations(spec: Mapping[str, Any]) -> dict[str, str]:
    value = spec.get("annotations") or {}
    return value if isinstance(value, dict) else {}


def cgroups_path(spec: Mapping[str, Any]) -> str | None:
    linux = spec.get("linux") or {}
    return linux.get("cgroupsPath") or None


def has_private_pid_ns(spec: Mapping[str, Any]) -> bool:
    namespaces = (spec.get("linux") or {}).get("namespaces") or []
    return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)


def wanted_files(spec: Mapping[str, Any]) -> list[str]:
    """Files to virtualize that the user has not mounted something of their own over."""
    taken = {os.path.normpath(m.get("destination", "")) for m in spec.get("mounts") or []}
    return [f for f in DEFAULT_FILES if f not in taken]


def add_view_mounts(spec: dict[str, Any], sources: Mapping[str, str]) -> list[str]:
    """Append read-only binds of `sources` (target -> host path); they must come after /proc.

    Returns the targets added. Targets runc would refuse are rejected here with a clear error
    instead of a runc failure later.
    """
    added = []
    mounts = spec.setdefault("mounts", [])
    taken = {os.path.normpath(m.get("destination", "")) for m in mounts}
    for target, source in sources.items():
        if target not in PROC_ALLOWED | SYS_FILES:
            raise SpecError(f"{target} cannot be bind-mounted by runc")
        if target in taken:
            continue
        mounts.append({"destination": target, "type": "bind", "source": source,
                       "options": ["bind", "ro", "nosuid", "nodev", "noexec"]})
        added.append(target)
    return added


def view_targets(spec: Mapping[str, Any], view_root: str) -> Iterable[str]:
    """Targets in `spec` that are binds of our view (used by cleanup)."""
    for m in spec.get("mounts") or []:
        if str(m.get("source", "")).startswith(view_root + "/"):
            yield m.get("destination", "")
