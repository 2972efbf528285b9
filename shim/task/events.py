"""Task events to containerd: one ordered queue, forwarded over ttrpc to TTRPC_ADDRESS.

Order matters (create -> start -> exit -> delete), so a single task sends them one at a time
over one long-lived connection; a failed forward is retried on a fresh connection before the
next event goes out, and dropped after a few attempts (as the Go shim does).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
import anyio.abc
import betterproto
from betterproto.lib.google.protobuf import Empty

from protos.gen.containerd.services.events.ttrpc import v1 as events_svc
from shim.transport.protoutil import pack_any
from shim.transport.ttrpc.client import TtrpcClient

log = logging.getLogger("shim.events")

_SERVICE = "containerd.services.events.ttrpc.v1.Events"
_QUEUE = 2048
_TIMEOUT = 5.0
_ATTEMPTS = 5


class Publisher:
    def __init__(self, address: str, namespace: str) -> None:
        self.address = address.removeprefix("unix://")
        self.namespace = namespace
        self._send, self._receive = anyio.create_memory_object_stream[events_svc.ForwardRequest](
            _QUEUE
        )
        self._pending = 0
        self._idle = anyio.Event()
        self._idle.set()

    def publish(self, topic: str, event: betterproto.Message) -> None:
        """Queue an event; never blocks the caller (the Task service)."""
        envelope = events_svc.Envelope(
            timestamp=datetime.now(tz=UTC),
            namespace=self.namespace,
            topic=topic,
            event=pack_any(event),
        )
        try:
            self._send.send_nowait(events_svc.ForwardRequest(envelope=envelope))
        except anyio.WouldBlock:
            log.error("event queue full, dropping %s", topic)
            return
        if self._pending == 0:
            self._idle = anyio.Event()
        self._pending += 1

    def _done(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    async def flush(self, timeout: float = 3.0) -> None:
        """Wait (bounded) until queued events went out: used before the shim exits."""
        with anyio.move_on_after(timeout):
            await self._idle.wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        if not self.address:
            log.error("TTRPC_ADDRESS is not set: events cannot reach containerd")
        pending: events_svc.ForwardRequest | None = None
        attempts = 0
        async with self._receive:
            while True:
                if pending is None:
                    try:
                        pending = await self._receive.receive()
                    except anyio.EndOfStream:
                        return
                try:
                    async with TtrpcClient.connect(self.address) as client:
                        while pending is not None:
                            await client.call(_SERVICE, "Forward", pending, Empty, timeout=_TIMEOUT)
                            pending, attempts = None, 0
                            self._done()
                            pending = self._receive.receive_nowait() if self._pending else None
                except Exception as e:  # refused, closed, status: retry on a new connection
                    if pending is None:
                        continue
                    attempts += 1
                    log.warning("forward %s (attempt %d): %s", pending.envelope.topic, attempts, e)
                    if attempts >= _ATTEMPTS:
                        log.error("dropping event %s", pending.envelope.topic)
                        pending, attempts = None, 0
                        self._done()
                    await anyio.sleep(min(attempts, 3) * 0.2)
