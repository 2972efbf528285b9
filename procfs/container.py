"""What the view knows about one container: its cgroup, its init, and per-file memory
(/proc/stat's last output, the load average) that makes successive reads consistent."""

from __future__ import annotations

from dataclasses import dataclass, field

from procfs.cgroups import CgroupRef
from procfs.renderers.loadavg import LoadAverage
from procfs.renderers.stat import StatHistory
from procfs.renderers.vmstat import VmstatHistory


@dataclass
class Container:
    key: str
    ref: CgroupRef | None
    #: container path → host path of the view file bound there.
    files: dict[str, str] = field(default_factory=dict)
    inodes: list[int] = field(default_factory=list)
    init_pid: int | None = None
    #: init start, clock ticks after host boot (/proc/<pid>/stat field 22).
    init_start: int | None = None
    stat: StatHistory = field(default_factory=StatHistory)
    load: LoadAverage = field(default_factory=LoadAverage)
    vmstat: VmstatHistory = field(default_factory=VmstatHistory)
