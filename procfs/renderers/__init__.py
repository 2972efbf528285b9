"""Pure renderers: one per virtual file; (host file bytes, cgroup snapshot) in, bytes out.

Renderers do no I/O, so they are tested on fixtures alone and shared by cgroup v1 and v2.
"""

from procfs.renderers.cpuinfo import render_cpu_online, render_cpuinfo
from procfs.renderers.diskstats import render_diskstats
from procfs.renderers.loadavg import render_loadavg
from procfs.renderers.meminfo import render_meminfo
from procfs.renderers.pressure import render_pressure
from procfs.renderers.slabinfo import render_slabinfo
from procfs.renderers.stat import render_stat
from procfs.renderers.swaps import render_swaps
from procfs.renderers.uptime import render_uptime
from procfs.renderers.vmstat import render_vmstat

__all__ = [
    "render_cpu_online",
    "render_cpuinfo",
    "render_diskstats",
    "render_loadavg",
    "render_meminfo",
    "render_pressure",
    "render_slabinfo",
    "render_stat",
    "render_swaps",
    "render_uptime",
    "render_vmstat",
]
