"""Process state machines: the container's init (and later its execs).

State lives here, not in runc: State answers from it without a runc call, and every
transition checks what the reference shim checks, with its error texts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import anyio

from shim.errors import RpcError
from shim.stdio import ProcessIO


class Status(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
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
    #: set while Start runs, so an exit that races it is published after the start event
    start_done: anyio.Event = field(default_factory=anyio.Event)
    starting: bool = False

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
        if self.status is Status.RUNNING:
            raise RpcError.unknown("cannot delete a running process")
        if self.status is Status.DELETED:
            raise RpcError.not_found(f"process {self.id} already deleted")

    def check_kill(self) -> None:
        if self.status in (Status.STOPPED, Status.DELETED):
            raise RpcError.not_found("process already finished")
