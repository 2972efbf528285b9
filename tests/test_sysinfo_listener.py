"""The shim's seccomp listener survives peers that are not runc (garbage, early close, fds
for containers it does not know), and closes every fd it is handed but does not serve."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import anyio
import pytest

from procfs.view import View
from shim.task.sysinfo_notify import SysinfoNotifier


def _send(path: str, data: bytes, fds: list[int] = ()) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        if fds:
            socket.send_fds(s, [data], list(fds))
        elif data:
            s.sendall(data)


@pytest.mark.anyio
async def test_listener_survives_bad_peers(tmp_path: Path) -> None:
    notifier = SysinfoNotifier(str(tmp_path), View(tmp_path / "view"))
    r, w = os.pipe()
    async with anyio.create_task_group() as tg:
        await tg.start(notifier.run)
        assert os.stat(notifier.path).st_mode & 0o777 == 0o600
        state = json.dumps({"state": {"id": "nobody"}, "pid": 1}).encode()
        for data, fds in ((b"", []), (b"{not json", []), (b"{}", [w]), (state, [r])):
            await anyio.to_thread.run_sync(_send, notifier.path, data, fds)
        await anyio.sleep(0.2)
        assert notifier.fds_received == 0
        # still listening
        await anyio.to_thread.run_sync(_send, notifier.path, b"", [])
        tg.cancel_scope.cancel()
    assert not os.path.exists(notifier.path)
    # our copies were closed by the shim side; only the test's own remain
    os.close(r)
    os.close(w)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
