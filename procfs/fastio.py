"""Whole-file reads of small kernel files (procfs, sysfs, cgroupfs) with the least overhead.

Every view ``open`` renders from a dozen such files; ``Path(...).read_text()`` builds a Path,
a FileIO, a BufferedReader and a TextIOWrapper per file (~10 µs of Python each time), here it
is two or three syscalls. Errors are the usual ``OSError`` subclasses (``FileNotFoundError``,
``ProcessLookupError`` for a task that exited).
"""

from __future__ import annotations

import os

#: One read is enough for all but the largest files (/proc/slabinfo is read page by page).
CHUNK = 65536


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file (reads until EOF: a short read is not EOF for every kernel file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, CHUNK)
        if not data:
            return data
        more = os.read(fd, CHUNK)
        if not more:
            return data
        chunks = [data, more]
        while more := os.read(fd, CHUNK):
            chunks.append(more)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str]) -> str:
    return read_bytes(path).decode()


def read_head(path: str | os.PathLike[str], lines: int) -> bytes:
    """The first ``lines`` lines (or the whole file if shorter), without reading the rest."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while data.count(b"\n") < lines:
            more = os.read(fd, 4096)
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)
