"""OCI spec rewrite: bind the container's FUSE view over the files it virtualizes.

Pure functions on the parsed config.json; the service reads and writes the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

#: Paths runc lets a bind mount cover inside /proc (every runc >= 1.0), and sysfs files.
PROC_ALLOWED = frozenset(
    {
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
    }
)
SYS_FILES = frozenset({"/sys/devices/system/cpu/online"})
#: Files runc refuses to bind at create: the shim mounts them into the created container's
#: mount namespace before `runc start` (procfs/late_mounts.py).
LATE_FILES = frozenset(
    {
        "/proc/vmstat",
        "/proc/pressure/cpu",
        "/proc/pressure/memory",
        "/proc/pressure/io",
    }
)

#: Every file the view renders, by the short name annotations use.
FILE_NAMES = {
    "meminfo": "/proc/meminfo",
    "cpuinfo": "/proc/cpuinfo",
    "stat": "/proc/stat",
    "uptime": "/proc/uptime",
    "loadavg": "/proc/loadavg",
    "diskstats": "/proc/diskstats",
    "swaps": "/proc/swaps",
    "slabinfo": "/proc/slabinfo",
    "cpu-online": "/sys/devices/system/cpu/online",
    "vmstat": "/proc/vmstat",
    "pressure-cpu": "/proc/pressure/cpu",
    "pressure-memory": "/proc/pressure/memory",
    "pressure-io": "/proc/pressure/io",
}
#: Virtualized unless annotations say otherwise: all of them, as lxcfs setups bind them all.
DEFAULT_FILES = tuple(FILE_NAMES.values())
#: What the shim answers besides files, selected by the same annotations (on by default):
#: ``sysinfo`` is the syscall, answered through seccomp (shim/task/sysinfo_notify.py).
FEATURES = frozenset({"sysinfo"})

#: Per-container selection (OCI annotations; Kubernetes pods reach them through containerd's
#: ``pod_annotations`` passthrough). Lists are comma- or space-separated short names
#: (:data:`FILE_NAMES`) or container paths.
ANNOTATION_FILES = "io.containerd.lxcfs.files"  # exactly these files instead of the defaults
ANNOTATION_DISABLE = "io.containerd.lxcfs.disable"  # "true"/"all": none; else names to drop
_ALL = frozenset({"true", "all", "*", "1", "yes"})
_NONE = frozenset({"false", "none", "0", "no", ""})


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
        f.write(json.dumps(spec))  # one C-encoder call; json.dump streams through Python code
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


def _words(value: str) -> list[str]:
    return value.replace(",", " ").split()


def _file_list(value: str, annotation: str) -> list[str]:
    out = []
    for word in _words(value):
        if word in FEATURES:
            continue
        path = FILE_NAMES.get(word, word)
        if path not in FILE_NAMES.values():
            known = ", ".join([*FILE_NAMES, *sorted(FEATURES)])
            raise SpecError(f"{annotation}: unknown file {word!r} (known: {known})")
        out.append(path)
    return out


def selected_files(spec: Mapping[str, Any]) -> list[str]:
    """The files the annotations ask for (defaults: :data:`DEFAULT_FILES`).

    Raises SpecError on names it does not know: a typo must not silently give the host view.
    """
    notes = annotations(spec)
    files = list(DEFAULT_FILES)
    if ANNOTATION_FILES in notes:
        files = _file_list(str(notes[ANNOTATION_FILES]), ANNOTATION_FILES)
    disable = str(notes.get(ANNOTATION_DISABLE, "")).strip()
    if disable.lower() in _ALL:
        return []
    if disable.lower() not in _NONE:
        dropped = set(_file_list(disable, ANNOTATION_DISABLE))
        files = [f for f in files if f not in dropped]
    return list(dict.fromkeys(files))


def sysinfo_selected(spec: Mapping[str, Any]) -> bool:
    """Whether the annotations leave sysinfo(2) to the shim (they do unless they opt out:
    ``disable`` all or ``sysinfo``, or a ``files`` list without ``sysinfo``)."""
    selected_files(spec)  # the same validation: a typo fails the create
    notes = annotations(spec)
    if ANNOTATION_FILES in notes and "sysinfo" not in _words(str(notes[ANNOTATION_FILES])):
        return False
    disable = str(notes.get(ANNOTATION_DISABLE, "")).strip()
    return disable.lower() not in _ALL and "sysinfo" not in _words(disable)


def wanted_files(spec: Mapping[str, Any]) -> list[str]:
    """Files to virtualize: the selection, minus targets the user has mounted something of
    their own over, minus files whose filesystem the container does not mount (a bind onto
    /sys/... without a sysfs at /sys would create the path in the image instead)."""
    mounts = spec.get("mounts") or []
    taken = {os.path.normpath(m.get("destination", "")) for m in mounts}
    types = {os.path.normpath(m.get("destination", "")): m.get("type") for m in mounts}
    out = []
    for f in selected_files(spec):
        top = "/" + f.split("/")[1]
        if f in taken or types.get(top) not in ("proc", "sysfs"):
            continue
        out.append(f)
    return out


def add_view_mounts(spec: dict[str, Any], sources: Mapping[str, str]) -> list[str]:
    """Append read-only binds of `sources` (target -> host path); they must come after /proc.

    Returns the targets added. :data:`LATE_FILES` are left to the shim (mounted after create);
    other targets runc would refuse are rejected here with a clear error instead of a runc
    failure later.
    """
    added = []
    mounts = spec.setdefault("mounts", [])
    taken = {os.path.normpath(m.get("destination", "")) for m in mounts}
    for target, source in sources.items():
        if target in LATE_FILES:
            continue
        if target not in PROC_ALLOWED | SYS_FILES:
            raise SpecError(f"{target} cannot be bind-mounted by runc")
        if target in taken:
            continue
        mounts.append(
            {
                "destination": target,
                "type": "bind",
                "source": source,
                "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
            }
        )
        added.append(target)
    return added


def view_targets(spec: Mapping[str, Any], view_root: str) -> Iterable[str]:
    """Targets in `spec` that are binds of our view (used by cleanup)."""
    for m in spec.get("mounts") or []:
        if str(m.get("source", "")).startswith(view_root + "/"):
            yield m.get("destination", "")
