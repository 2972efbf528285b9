"""Process state machines: the container's init and its execs.

State lives here, not in runc: State answers from it without a runc call, and every
transition checks what the reference shim checks, with its error texts (see
shared/reference/task-api.md §4).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import anyio

from shim.task.stdio import ProcessIO
from shim.transport.errors import RpcError


class Status(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPED = "stopped"
    DELETED = "deleted"


@dataclass
class Process:
    id: str  #: container id for the init, exec id otherwise
    io: ProcessIO
    pid: int = 0
    status: Status = Status.CREATED
    exit_status: int = 0
    exited_at: float | None = None  #: time.time() the shim collected the exit
    exited: anyio.Event = field(default_factory=anyio.Event)
    #: set once Start has finished (either way), so a racing exit is published after it
    start_done: anyio.Event = field(default_factory=anyio.Event)
    starting: bool = False
    #: exec only: the OCI Process (JSON) to hand to `runc exec`
    spec: dict[str, Any] | None = None

    @property
    def is_exec(self) -> bool:
        return self.spec is not None

    def set_exited(self, status: int, at: float) -> bool:
        """Record the exit once; later calls are ignored (exactly-once exit status)."""
        if self.exited.is_set():
            return False
        self.exit_status, self.exited_at = status, at
        if self.status is not Status.DELETED:
            self.status = Status.STOPPED
        self.exited.set()
        return True

    def check_start(self) -> None:
        if self.status is not Status.CREATED:
            raise RpcError.unknown(f"cannot start a {self.status.value} process")

    def check_delete(self) -> None:
        if self.status in (Status.RUNNING, Status.PAUSED, Status.PAUSING):
            raise RpcError.unknown(f"cannot delete a {self.status.value} process")
        if self.status is Status.DELETED:
            raise RpcError.not_found(f"process {self.id} already deleted")

    def check_kill(self) -> None:
        if self.status in (Status.STOPPED, Status.DELETED):
            raise RpcError.not_found("process already finished")
        if self.is_exec and self.pid == 0:
            raise RpcError.failed_precondition("process not created")

    # -- init only ---------------------------------------------------------------------------

    def check_exec(self) -> None:
        """May a new exec be added to this (init) process's container?"""
        if self.status in (Status.PAUSED, Status.PAUSING):
            raise RpcError.unknown("cannot exec in a paused state")
        if self.status in (Status.STOPPED, Status.DELETED):
            raise RpcError.unknown("cannot exec in a stopped state")

    def check_pause(self) -> None:
        if self.status is Status.CREATED:
            raise RpcError.unknown("cannot pause task in created state")
        if self.status is not Status.RUNNING:
            raise RpcError.unknown(f"cannot pause a {self.status.value} container")

    def check_resume(self) -> None:
        if self.status is Status.CREATED:
            raise RpcError.unknown("cannot resume task in created state")
        if self.status is Status.RUNNING:
            raise RpcError.unknown("cannot resume a running process")
        if self.status is not Status.PAUSED:
            raise RpcError.unknown(f"cannot resume a {self.status.value} container")

    def check_update(self) -> None:
        if self.status in (Status.STOPPED, Status.DELETED):
            raise RpcError.unknown("cannot update a stopped container")

    def check_checkpoint(self) -> None:
        if self.status in (Status.CREATED, Status.STOPPED, Status.DELETED):
            raise RpcError.unknown(f"cannot checkpoint a {self.status.value} container")
