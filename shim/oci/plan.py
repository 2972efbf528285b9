"""What Create does to one container, decided in one place before anything is done.

Create reads config.json once, asks :func:`plan` for every decision the spec and the
annotations imply, and then executes the plan step by step (shim/task/service.py):

1. the view renders :attr:`CreatePlan.files` for the cgroup at ``cgroups_path``;
2. config.json gets read-only binds of :attr:`CreatePlan.binds` (runc mounts them);
3. sysinfo(2) becomes a seccomp notification to the shim's listener when
   :attr:`CreatePlan.sysinfo` is ``"shim"``;
4. after ``runc create`` the shim mounts :attr:`CreatePlan.late` itself (runc refuses them);
5. without a private pid namespace, the init's exit kills what it leaves behind.

Pure: it reads the spec and changes nothing, so every decision is unit-tested here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shim.oci import seccomp, spec

#: Who answers sysinfo(2) in the container: the shim, or why the kernel does.
Sysinfo = Literal["shim", "unavailable", "annotations", "profile"]


@dataclass(frozen=True)
class CreatePlan:
    #: the spec's ``linux.cgroupsPath``: where the view reads the container's limits
    cgroups_path: str | None
    #: files the view renders for the container (annotations, minus the user's own mounts)
    files: tuple[str, ...]
    #: of those, the ones bound into config.json for runc to mount at create
    binds: tuple[str, ...]
    #: of those, the ones runc refuses to bind: the shim mounts them after ``runc create``
    late: tuple[str, ...]
    #: "shim": a notify rule to ``sysinfo_listener``; else why the kernel answers:
    #: "unavailable" (no listener, kernel without seccomp notify, or a restore from a
    #: checkpoint, whose filters criu brings back), "annotations" (the pod opted out),
    #: "profile" (the container's own seccomp profile decides sysinfo)
    sysinfo: Sysinfo
    sysinfo_listener: str
    #: the init has its own pid namespace (else its exit must kill what it leaves behind)
    private_pid_ns: bool


def plan(oci: Mapping[str, Any], sysinfo_listener: str | None) -> CreatePlan:
    """Every decision Create takes from ``oci``.

    ``sysinfo_listener`` is the socket runc hands seccomp notify fds to, or None when this
    shim cannot answer sysinfo(2) for the container. Raises :class:`spec.SpecError` for
    annotations naming files it does not know: a typo must not silently give the host view.
    """
    files = tuple(spec.wanted_files(oci))
    sysinfo: Sysinfo
    if sysinfo_listener is None:
        sysinfo = "unavailable"
    elif not spec.sysinfo_selected(oci):
        sysinfo = "annotations"
    elif not seccomp.can_notify(oci, sysinfo_listener):
        sysinfo = "profile"
    else:
        sysinfo = "shim"
    return CreatePlan(
        cgroups_path=spec.cgroups_path(oci),
        files=files,
        binds=tuple(f for f in files if f not in spec.LATE_FILES),
        late=tuple(f for f in files if f in spec.LATE_FILES),
        sysinfo=sysinfo,
        sysinfo_listener=sysinfo_listener if sysinfo == "shim" else "",
        private_pid_ns=spec.has_private_pid_ns(oci),
    )


def rewrite(oci: dict[str, Any], p: CreatePlan, sources: Mapping[str, str]) -> None:
    """Apply ``p`` to config.json's content: the binds (``sources``: target -> the view's
    host path, from ``View.add``) and the sysinfo notify rule."""
    spec.add_view_mounts(oci, {target: sources[target] for target in p.binds})
    if p.sysinfo == "shim":
        seccomp.notify_sysinfo(oci, p.sysinfo_listener)
