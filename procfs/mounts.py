"""The few mount syscalls the view needs, through libc (stdlib has none of them).

``open_tree``/``move_mount``/``mount_setattr`` (Linux ≥ 5.12) let a process clone a mount in
one mount namespace and attach it in another -- the only way to put a fresh FUSE mount back
under a running container's /proc, whose root no longer contains the host's paths.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MNT_DETACH = 2
CLONE_NEWNS = 0x00020000
CLONE_FS = 0x00000200
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_BENEATH = 0x200  # Linux >= 6.5
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

# Syscall numbers of the new mount API: one table for every architecture since 5.1.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def unshare_fs() -> None:
    """Give the calling thread its own root/cwd (fs_struct): setns(CLONE_NEWNS) needs that."""
    _check(_libc.unshare(CLONE_FS), "unshare(CLONE_FS)")


def setns_mnt(fd: int) -> None:
    """Enter a mount namespace (the calling thread must not share its fs_struct)."""
    _check(_libc.setns(fd, CLONE_NEWNS), "setns(mnt)")


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount at ``path`` (an fd), attachable in any namespace."""
    return _check(
        _libc.syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(AT_FDCWD),
            path.encode(),
            ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
        ),
        f"open_tree {path}",
    )


def set_read_only(fd: int) -> None:
    """ro,nosuid,nodev,noexec on a detached tree, as the spec's bind options ask."""
    attr = _MountAttr(
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0, 0, 0
    )
    _check(
        _libc.syscall(
            _SYS_MOUNT_SETATTR,
            ctypes.c_int(fd),
            b"",
            ctypes.c_uint(AT_EMPTY_PATH),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        "mount_setattr",
    )


def attach(fd: int, target: str, *, beneath: bool = False) -> None:
    """Attach a detached tree (from :func:`open_tree_clone`) at ``target``.

    ``beneath``: under the mount now on top of ``target`` (which stays visible until it is
    unmounted): a replacement without a moment where ``target`` shows what is underneath.
    """
    flags = MOVE_MOUNT_F_EMPTY_PATH | (MOVE_MOUNT_BENEATH if beneath else 0)
    _check(
        _libc.syscall(
            _SYS_MOVE_MOUNT,
            ctypes.c_int(fd),
            b"",
            ctypes.c_int(AT_FDCWD),
            target.encode(),
            ctypes.c_uint(flags),
        ),
        f"move_mount {'beneath' if beneath else 'to'} {target}",
    )
