"""A small synchronous CRI client: kubelet's calls to containerd's CRI plugin, for the tests.

Uses the betterproto/grpclib stubs generated from protos/src/runtime/v1/api.proto over the
containerd gRPC unix socket (the CRI plugin registers `runtime.v1.RuntimeService` and
`runtime.v1.ImageService` there). Each client owns one event loop and one channel, so pytest
fixtures can stay synchronous; every call has a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from grpclib.client import Channel

from protos.gen.runtime import v1 as cri

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0


class CriClient:
    """`with CriClient(socket) as c: c.runtime.<rpc>(...)` through `c.call(...)`."""

    def __init__(self, socket_path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._channel: Channel = self._run(self._open())
        self.runtime = cri.RuntimeServiceStub(self._channel, timeout=timeout)
        self.images = cri.ImageServiceStub(self._channel, timeout=timeout)

    async def _open(self) -> Channel:
        return Channel(path=self.socket_path)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one stub call (`c.call(c.runtime.version(cri.VersionRequest()))`)."""
        return self._run(coro)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._channel.close()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the kubelet calls the tests use ----------------------------------------------------

    def version(self) -> cri.VersionResponse:
        return self.call(self.runtime.version(cri.VersionRequest(version="v1")))

    def run_pod_sandbox(self, config: cri.PodSandboxConfig, handler: str) -> str:
        r = self.call(
            self.runtime.run_pod_sandbox(
                cri.RunPodSandboxRequest(config=config, runtime_handler=handler)
            )
        )
        return r.pod_sandbox_id

    def create_container(
        self, sandbox_id: str, config: cri.ContainerConfig, sandbox_config: cri.PodSandboxConfig
    ) -> str:
        r = self.call(
            self.runtime.create_container(
                cri.CreateContainerRequest(
                    pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
                )
            )
        )
        return r.container_id

    def start_container(self, cid: str) -> None:
        self.call(self.runtime.start_container(cri.StartContainerRequest(container_id=cid)))

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 30) -> cri.ExecSyncResponse:
        return self.call(
            self.runtime.exec_sync(cri.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout))
        )

    def container_stats(self, cid: str) -> cri.ContainerStats:
        r = self.call(self.runtime.container_stats(cri.ContainerStatsRequest(container_id=cid)))
        return r.stats

    def container_status(self, cid: str) -> cri.ContainerStatus:
        r = self.call(self.runtime.container_status(cri.ContainerStatusRequest(container_id=cid)))
        return r.status

    def stop_container(self, cid: str, timeout: int = 10) -> None:
        self.call(
            self.runtime.stop_container(cri.StopContainerRequest(container_id=cid, timeout=timeout))
        )

    def remove_container(self, cid: str) -> None:
        self.call(self.runtime.remove_container(cri.RemoveContainerRequest(container_id=cid)))

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self.call(
            self.runtime.stop_pod_sandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
        )

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.call(
            self.runtime.remove_pod_sandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
        )

    def list_pod_sandboxes(self) -> list[cri.PodSandbox]:
        return self.call(self.runtime.list_pod_sandbox(cri.ListPodSandboxRequest())).items

    def list_containers(self) -> list[cri.Container]:
        return self.call(self.runtime.list_containers(cri.ListContainersRequest())).containers

    def image_status(self, image: str) -> cri.Image | None:
        r = self.call(
            self.images.image_status(cri.ImageStatusRequest(image=cri.ImageSpec(image=image)))
        )
        return r.image if r.image.id else None
