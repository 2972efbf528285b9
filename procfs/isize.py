"""The size the kernel holds for one of the view's files (its ``i_size``), read without a
FUSE round trip.

A GETATTR reply does not set the size when the kernel gets it: the caller applies it after
it wakes up, and drops it if any attribute change reached the inode after the request was
queued. So the view cannot know the size from what it replied; it reads it instead, with
``statx(AT_STATX_DONT_SYNC)`` on an ``O_PATH`` descriptor of the file: the cached
attributes, no request to the view (which would wait for the very loop asking).

The descriptor is opened by walking the mount, i.e. with LOOKUPs that the view answers: so
never from the view's own loop (see ``View._track_sizes``). Python has no ``os.statx`` before
3.15, hence ctypes; glibc has had ``statx`` since 2.28.
"""

from __future__ import annotations

import ctypes
import os

AT_EMPTY_PATH = 0x1000
AT_STATX_DONT_SYNC = 0x4000
STATX_SIZE = 0x200
_STX_SIZE_OFFSET = 40  # struct statx: mask, blksize, attributes, nlink, uid, gid, mode, ino, size

_libc = ctypes.CDLL(None, use_errno=True)
_statx = _libc.statx
_statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
_statx.restype = ctypes.c_int
# One buffer: only the view's loop thread calls held_size.
_buf = (ctypes.c_char * 256)()
_size = ctypes.c_uint64.from_buffer(_buf, _STX_SIZE_OFFSET)


def open_path(path: str | os.PathLike[str]) -> int:
    """An ``O_PATH`` descriptor of ``path`` (no FUSE OPEN, no FLUSH on close)."""
    return os.open(path, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)


def held_size(fd: int) -> int:
    """The size the kernel currently holds for the file behind ``fd`` (no refresh)."""
    if _statx(fd, b"", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_SIZE, _buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return _size.value
