"""One line from `start` into containerd's log, without importing logging.

containerd reads `start`'s stdout and stderr together as the answer, so a warning cannot go
there; it also opens the bundle's `log` fifo before running `start` and copies every line
into its own log (as it does for the serving process). Best effort: no fifo, no line.
"""

from __future__ import annotations

import os
import time

from shim.identity import RUNTIME_NAME


def line(level: str, message: str, namespace: str, id: str) -> str:
    """A logrus text line, as shim/entry/logs.py writes them."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    escaped = message.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'time="{stamp}.{int(now * 1000) % 1000:03d}Z" level={level} msg="{escaped}" '
        f"logger=shim.start namespace={namespace} runtime={RUNTIME_NAME} id={id}\n"
    )


def warn(bundle: str, message: str, namespace: str, id: str) -> None:
    try:
        fd = os.open(
            os.path.join(bundle, "log"), os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC
        )
    except OSError:
        return
    try:
        os.write(fd, line("warning", message, namespace, id).encode())
    except OSError:
        pass
    finally:
        os.close(fd)
