"""Wall-clock stage marks for profiling the container lifecycle across processes.

Off unless the environment containerd gives its shims names a file in
`CONTAINERD_SHIM_LXCFS_TRACE`; then every mark appends `<CLOCK_REALTIME ns> <pid> <label>` to it
with one O_APPEND write, so `start`, the fork server, the serving process and `delete` of one
container land on one time line next to the caller's own marks (`python -m bench.profile`).
The variable is looked up at every mark: a forked shim carries the environment of its request.

The same marks are the fault-injection points of the tests: with `CONTAINERD_SHIM_LXCFS_KILL_AT`
set to a comma-separated list of labels, the process SIGKILLs itself on reaching one of them
(tests/test_e2e_kill.py kills the shim at every stage of Create/Start/Exec/Delete that way).
"""

from __future__ import annotations

import os
import time

ENV = "CONTAINERD_SHIM_LXCFS_TRACE"
KILL_ENV = "CONTAINERD_SHIM_LXCFS_KILL_AT"


def mark(label: str) -> None:
    kill = os.environ.get(KILL_ENV)
    if kill and label in kill.split(","):
        os.kill(os.getpid(), 9)
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, f"{time.time_ns()} {os.getpid()} {label}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)
