"""Pure renderers: one per virtual file; (host file bytes, cgroup snapshot) in, bytes out.

Renderers do no I/O, so they are tested on fixtures alone and shared by cgroup v1 and v2.
"""

from procfs.renderers.meminfo import render_meminfo

__all__ = ["render_meminfo"]
