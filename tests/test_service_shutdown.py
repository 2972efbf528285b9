"""Shutdown must not take a pod's shim away while a Create of the same shim is under way.

CRI groups a pod's containers in one shim and containerd sends Shutdown after every task
Delete; the shim leaves only when nothing is left. A Create registers its container only after
`runc create` returns, so without counting creates under way, a Shutdown for another
container in that window ended the shim under the Create (`ttrpc: closed`).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from procfs.view import View
from protos.gen.containerd.task.v2 import CreateTaskRequest, ShutdownRequest
from shim.task.events import Publisher
from shim.task.reaper import Reaper
from shim.task.service import TaskService
from shim.transport.errors import RpcError


def test_shutdown_during_create_keeps_the_shim(tmp_path: Path):
    async def main() -> None:
        idle: list[bool] = []
        release = anyio.Event()
        entered = anyio.Event()
        async with anyio.create_task_group() as tg:
            service = TaskService(
                namespace="t",
                reaper=Reaper(),
                view=View(tmp_path / "v"),
                publisher=Publisher("", "t"),
                task_group=tg,
                on_idle=lambda: idle.append(True),
            )

            async def slow_create(req: CreateTaskRequest) -> None:
                entered.set()
                await release.wait()  # runc create taking its time

            service._create = slow_create  # type: ignore[method-assign]
            tg.start_soon(service.create, CreateTaskRequest(id="app", bundle="/nonexistent"))
            await entered.wait()
            assert service.has_containers()
            with pytest.raises(RpcError):  # the same id twice at once: already exists
                await service.create(CreateTaskRequest(id="app", bundle="/nonexistent"))
            await service.shutdown(ShutdownRequest(id="pause"))
            assert not idle, "Shutdown ended the shim while a Create was under way"
            release.set()
        assert not service.has_containers()
        await service.shutdown(ShutdownRequest(id="app"))
        assert idle == [True]

    anyio.run(main, backend="asyncio")
