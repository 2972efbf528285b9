"""Spec rewrite for sysinfo(2): a ``SCMP_ACT_NOTIFY`` rule merged into the container's own
seccomp profile, and the listener runc hands the notify fd to. Pure functions on the spec.

The user's profile keeps deciding: a profile that denies sysinfo (an explicit rule, or a
default action other than allow with no rule allowing it) or already has a listener of its
own is left exactly as it is. Otherwise an unconditional allow of sysinfo is replaced by the
notify rule (libseccomp refuses two actions for one syscall), and every other rule stays.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

SYSCALL = "sysinfo"
NOTIFY = "SCMP_ACT_NOTIFY"
_ALLOW = "SCMP_ACT_ALLOW"
#: Longest path connect(2) takes (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107


def _names(rule: dict[str, Any]) -> list[str]:
    names = list(rule.get("names") or [])
    if rule.get("name"):  # pre-1.0 specs
        names.append(rule["name"])
    return names


def can_notify(spec: Mapping[str, Any], listener: str) -> bool:
    """Whether :func:`notify_sysinfo` would take sysinfo(2) over (pure): not when the
    user's profile decides sysinfo itself or the listener path is too long."""
    if len(listener) > MAX_SOCKET_PATH:
        return False
    profile = (spec.get("linux") or {}).get("seccomp")
    if profile is None:
        return True
    if profile.get("listenerPath"):
        return False
    ours = [r for r in profile.get("syscalls") or [] if SYSCALL in _names(r)]
    if any(r.get("action") != _ALLOW or r.get("args") for r in ours):
        return False  # denied, logged, traced or conditional: the user's call
    return bool(ours) or profile.get("defaultAction") == _ALLOW  # else not allowed at all


def notify_sysinfo(spec: dict[str, Any], listener: str) -> bool:
    """Make sysinfo(2) a notification to ``listener``; False (spec untouched) when
    :func:`can_notify` says the profile or the path leaves it to the kernel."""
    if not can_notify(spec, listener):
        return False
    linux = spec.setdefault("linux", {})
    profile = linux.get("seccomp")
    if profile is None:
        linux["seccomp"] = {
            "defaultAction": _ALLOW,
            "listenerPath": listener,
            "syscalls": [{"names": [SYSCALL], "action": NOTIFY}],
        }
        return True
    rules = profile.get("syscalls") or []
    ours = [r for r in rules if SYSCALL in _names(r)]
    merged = []
    for r in rules:
        if r in ours:
            names = [n for n in _names(r) if n != SYSCALL]
            r = copy.deepcopy(r)
            r.pop("name", None)
            r["names"] = names
            if not r["names"]:
                continue
        merged.append(r)
    merged.append({"names": [SYSCALL], "action": NOTIFY})
    profile["syscalls"] = merged
    profile["listenerPath"] = listener
    return True
