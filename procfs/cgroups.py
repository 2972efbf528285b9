"""Find a container's cgroup directories, for cgroup v1, hybrid and v2 hosts.

Two sources, in order of authority:

* the OCI spec's ``linux.cgroupsPath`` -- known before ``runc create``, so the FUSE tree can answer
  while runc is still setting the container up (:func:`resolve_spec_path`);
* ``/proc/<init pid>/cgroup`` -- what the kernel says once the init exists (:func:`ref_from_proc`).

Paths are kept relative to each hierarchy's root (``/a/b``) plus the hierarchy's mountpoint, so
readers can walk up to -- but never above -- the root when looking for an ancestor's limit.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Key used for the cgroup2 (unified) hierarchy in per-controller mappings.
UNIFIED = ""


@dataclass(frozen=True)
class Hierarchies:
    """Where the cgroup hierarchies are mounted on this host.

    ``v1`` maps each v1 controller (``memory``, ``cpu``, ``name=systemd``...) to its mountpoint;
    ``v2`` is the cgroup2 mountpoint, if any. On a hybrid host both are set, but a controller
    is only usable in the hierarchy it is bound to.
    """

    v1: Mapping[str, Path] = field(default_factory=dict)
    v2: Path | None = None

    @property
    def unified(self) -> bool:
        """Pure cgroup v2 host: the memory controller is not on a v1 hierarchy."""
        return "memory" not in self.v1 and self.v2 is not None

    def mountpoint(self, controller: str) -> Path | None:
        """Mountpoint serving ``controller``: its v1 hierarchy, else cgroup2."""
        if controller in self.v1:
            return self.v1[controller]
        return self.v2


#: cgroup v1 super options that are flags, not controller names.
_NOT_CONTROLLERS = frozenset(
    {"rw", "ro", "xattr", "clone_children", "noprefix", "cpuset_v2_mode", "favordynmods", "none"}
)


def parse_mountinfo(text: str) -> Hierarchies:
    """Extract cgroup mounts from ``/proc/self/mountinfo`` text.

    Only mounts of a hierarchy's root (field 4 == ``/``) count; bind mounts of sub-cgroups (as
    seen inside containers) would make paths from ``/proc/<pid>/cgroup`` resolve wrongly.
    """
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        tail = post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mountpoint = fields[3], _unescape(fields[4])
        fstype, options = tail[0], tail[2].split(",")
        if root != "/":
            continue
        if fstype == "cgroup2":
            v2 = v2 or Path(mountpoint)
        elif fstype == "cgroup":
            for opt in options:
                if opt in _NOT_CONTROLLERS or ("=" in opt and not opt.startswith("name=")):
                    continue
                v1.setdefault(opt, Path(mountpoint))
    return Hierarchies(v1=v1, v2=v2)


def discover_hierarchies(mountinfo: Path = Path("/proc/self/mountinfo")) -> Hierarchies:
    """Read the cgroup mounts of the current mount namespace."""
    return parse_mountinfo(mountinfo.read_text())


def _unescape(s: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for space, ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


@dataclass(frozen=True)
class CgroupRef:
    """One container's cgroup: a path (relative to the hierarchy root) per controller.

    ``paths`` is keyed by v1 controller name, and by :data:`UNIFIED` for the cgroup2 path.
    """

    hierarchies: Hierarchies
    paths: Mapping[str, str]
    _ancestors: dict[str, list[Path]] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def path(self, controller: str) -> str | None:
        """Cgroup path (``/a/b``) serving ``controller``, or None if it is unknown."""
        if controller in self.hierarchies.v1:
            return self.paths.get(controller)
        if self.hierarchies.v2 is not None:
            return self.paths.get(UNIFIED)
        return None

    def version(self, controller: str) -> int | None:
        """1 or 2 depending on which hierarchy serves ``controller``; None if neither."""
        if controller in self.hierarchies.v1:
            return 1
        return 2 if self.hierarchies.v2 is not None else None

    def root(self, controller: str) -> Path | None:
        """Mountpoint of the hierarchy serving ``controller``."""
        return self.hierarchies.mountpoint(controller)

    def dir(self, controller: str) -> Path | None:
        """Directory of this cgroup for ``controller``, or None if it cannot be known."""
        dirs = self.ancestors(controller)
        return dirs[0] if dirs else None

    def ancestors(self, controller: str) -> list[Path]:
        """This cgroup's directory followed by each parent up to and including the root.

        Memoized (every view open walks it): a ref is immutable, and so is its mount table.
        """
        cached = self._ancestors.get(controller)
        if cached is not None:
            return cached
        root, path = self.root(controller), self.path(controller)
        if root is None or path is None:
            return []
        parts = [p for p in path.split("/") if p]
        out = [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
        self._ancestors[controller] = out
        return out


# --- linux.cgroupsPath ----------------------------------------------------------------------


def is_systemd_path(cgroups_path: str) -> bool:
    """True for runc's systemd form ``slice:prefix:name`` (never starts with ``/``)."""
    return not cgroups_path.startswith("/") and cgroups_path.count(":") == 2


def expand_slice(slice_name: str) -> str:
    """Slice unit → cgroup path: ``a-b.slice`` → ``/a.slice/a-b.slice``, ``-.slice`` → ``/``.

    Raises ValueError for names systemd would reject (so a bad spec fails early and loudly).
    """
    if slice_name == "-.slice":
        return "/"
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise ValueError(f"invalid slice name {slice_name!r}")
    stem = slice_name.removesuffix(".slice")
    if not stem or stem.startswith("-") or stem.endswith("-") or "--" in stem:
        raise ValueError(f"invalid slice name {slice_name!r}")
    words = stem.split("-")
    return "/" + "/".join("-".join(words[: i + 1]) + ".slice" for i in range(len(words)))


def systemd_to_path(cgroups_path: str) -> str:
    """runc's ``parent:prefix:name`` → cgroup path, as runc's systemd driver lays it out.

    The unit is ``prefix-name.scope`` (``name.scope`` without prefix) unless ``name`` is itself
    a ``.slice``; an empty parent means ``system.slice``.
    """
    parent, prefix, name = cgroups_path.split(":")
    if not name:
        raise ValueError(f"systemd cgroupsPath without a name: {cgroups_path!r}")
    if name.endswith(".slice"):
        unit = name
    else:
        unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    base = expand_slice(parent or "system.slice")
    return posixpath.join(base, unit)


def resolve_spec_path(
    cgroups_path: str,
    hierarchies: Hierarchies,
    own: Mapping[str, str] | None = None,
    *,
    systemd: bool | None = None,
) -> CgroupRef:
    """Where runc will put a container whose spec has ``linux.cgroupsPath = cgroups_path``.

    * absolute ``/a/b``: the same path in every hierarchy;
    * relative ``a/b``: below the cgroup of the process running runc (the shim itself), looked
      up per controller in ``own`` (parsed ``/proc/self/cgroup``), as runc's fs drivers do;
    * systemd form (``systemd=None`` auto-detects ``x:y:z``): see :func:`systemd_to_path`.
    """
    if systemd is None:
        systemd = is_systemd_path(cgroups_path)
    if systemd:
        path = systemd_to_path(cgroups_path)
        return CgroupRef(hierarchies, _same_everywhere(hierarchies, path))
    if cgroups_path.startswith("/"):
        path = posixpath.normpath(cgroups_path)
        path = "/" if path == "//" else path
        return CgroupRef(hierarchies, _same_everywhere(hierarchies, path))
    rel = posixpath.normpath(cgroups_path)
    if rel.startswith(".."):
        raise ValueError(f"cgroupsPath escapes its parent: {cgroups_path!r}")
    if own is None:
        own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    paths = {c: posixpath.join(p, rel) for c, p in own.items()}
    return CgroupRef(hierarchies, paths)


def _same_everywhere(hierarchies: Hierarchies, path: str) -> dict[str, str]:
    keys: Iterable[str] = list(hierarchies.v1) + ([UNIFIED] if hierarchies.v2 else [])
    return dict.fromkeys(keys, path)


# --- /proc/<pid>/cgroup ---------------------------------------------------------------------


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` → {controller: path}; the ``0::`` line maps to :data:`UNIFIED`.

    A v1 line naming several controllers (``3:cpu,cpuacct:/x``) yields one entry per controller.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not sep or not sep2:
            continue
        if hid == "0" and controllers == "":
            out[UNIFIED] = path
            continue
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def ref_from_proc(pid: int, hierarchies: Hierarchies, proc: Path = Path("/proc")) -> CgroupRef:
    """The authoritative cgroup of a running process (read in the host's cgroup namespace)."""
    text = (proc / str(pid) / "cgroup").read_text()
    return CgroupRef(hierarchies, parse_proc_cgroup(text))
