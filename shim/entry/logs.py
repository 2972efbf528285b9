"""Shim logging: logrus-style text lines on the bundle's `log` fifo.

containerd opens `<bundle>/log` before running the shim and copies every line into its own
log, so the daemon makes that fifo its stderr and logs there.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from shim.identity import RUNTIME_NAME


class _LogrusFormatter(logging.Formatter):
    def __init__(self, namespace: str, id: str) -> None:
        super().__init__()
        self._suffix = f" namespace={namespace} runtime={RUNTIME_NAME} id={id}"

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        level = {"WARNING": "warning", "CRITICAL": "fatal"}.get(
            record.levelname, record.levelname.lower()
        )
        escaped = message.replace("\\", "\\\\").replace('"', '\\"')
        return (
            f'time="{stamp}.{int(record.msecs):03d}Z" level={level} msg="{escaped}" '
            f"logger={record.name}{self._suffix}"
        )


def setup(namespace: str, id: str, debug: bool) -> None:
    """Point fd 2 at the `log` fifo in cwd (if any) and log there."""
    try:
        fd = os.open("log", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(fd, True)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:
        pass  # run by hand, or containerd without a log fifo: keep the given stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogrusFormatter(namespace, id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # h2 and hpack log every frame and header at DEBUG (thousands of lines per gRPC
    # container); containerd's debug level asks for the shim's story, not HTTP/2 frames.
    for noisy in _WIRE_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: Loggers of the HTTP/2 stack under grpclib.
_WIRE_LOGGERS = ("h2", "hpack")
