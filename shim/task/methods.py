"""The Task service as a transport-neutral method table.

ttrpc serves it as `containerd.task.v2.Task` and `containerd.task.v3.Task` (containerd 2.x),
and shim/transport/grpc.py as gRPC `containerd.task.v3.Task`: both packages define
byte-identical messages, so the v2 classes decode either on every transport.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import betterproto

from protos.gen.containerd.task import v2 as api
from shim.task.service import TaskService
from shim.transport.errors import RpcError
from shim.transport.rpc import Method, Services

TASK_V2 = "containerd.task.v2.Task"
TASK_V3 = "containerd.task.v3.Task"

#: RPC name -> (request type, service attribute)
_RPCS: dict[str, tuple[type[betterproto.Message], str]] = {
    "State": (api.StateRequest, "state"),
    "Create": (api.CreateTaskRequest, "create"),
    "Start": (api.StartRequest, "start"),
    "Delete": (api.DeleteRequest, "delete"),
    "Pids": (api.PidsRequest, "pids"),
    "Pause": (api.PauseRequest, "pause"),
    "Resume": (api.ResumeRequest, "resume"),
    "Checkpoint": (api.CheckpointTaskRequest, "checkpoint"),
    "Kill": (api.KillRequest, "kill"),
    "Exec": (api.ExecProcessRequest, "exec"),
    "ResizePty": (api.ResizePtyRequest, "resize_pty"),
    "CloseIO": (api.CloseIoRequest, "close_io"),
    "Update": (api.UpdateTaskRequest, "update"),
    "Wait": (api.WaitRequest, "wait"),
    "Stats": (api.StatsRequest, "stats"),
    "Connect": (api.ConnectRequest, "connect"),
    "Shutdown": (api.ShutdownRequest, "shutdown"),
}


def _unimplemented(name: str) -> Callable[[betterproto.Message], Awaitable[betterproto.Message]]:
    async def call(_: betterproto.Message) -> betterproto.Message:
        raise RpcError.unimplemented(f"{name} is not implemented by this shim yet")

    return call


def _noting(
    service: TaskService, call: Callable[[Any], Awaitable[betterproto.Message]]
) -> Callable[[Any], Awaitable[betterproto.Message]]:
    """`call`, recording when the service last heard from containerd (its unused exit)."""

    async def noted(request: Any) -> betterproto.Message:
        service.last_request = time.monotonic()
        return await call(request)

    return noted


def task_methods(service: TaskService) -> dict[str, Method]:
    return {
        name: Method(
            request, _noting(service, getattr(service, attr, None) or _unimplemented(name))
        )
        for name, (request, attr) in _RPCS.items()
    }


def task_services(service: TaskService) -> Services:
    methods = task_methods(service)
    return {TASK_V2: methods, TASK_V3: methods}
