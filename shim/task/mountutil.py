"""mount(2)/umount2(2) through libc, and the FUSE-connection abort that frees hung readers.

Stdlib only (ctypes, loaded on first use): `delete` uses it to clean up after a dead shim and
usually finds nothing mounted, so it never pays for ctypes.
"""

from __future__ import annotations

import os

MNT_DETACH = 2
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000

#: option -> (flags to set, flags to clear), as mount(8) and containerd understand them
_FLAGS = {
    "ro": (MS_RDONLY, 0),
    "rw": (0, MS_RDONLY),
    "nosuid": (0x2, 0),
    "suid": (0, 0x2),
    "nodev": (0x4, 0),
    "dev": (0, 0x4),
    "noexec": (0x8, 0),
    "exec": (0, 0x8),
    "sync": (0x10, 0),
    "async": (0, 0x10),
    "dirsync": (0x80, 0),
    "remount": (MS_REMOUNT, 0),
    "mand": (0x40, 0),
    "nomand": (0, 0x40),
    "noatime": (0x400, 0),
    "atime": (0, 0x400),
    "nodiratime": (0x800, 0),
    "diratime": (0, 0x800),
    "relatime": (0x200000, 0),
    "norelatime": (0, 0x200000),
    "strictatime": (0x1000000, 0),
    "nostrictatime": (0, 0x1000000),
    "bind": (MS_BIND, 0),
    "rbind": (MS_BIND | MS_REC, 0),
}


def parse_options(options: list[str]) -> tuple[int, str]:
    """Split mount options into mount(2) flags and the filesystem's data string."""
    flags, data = 0, []
    for option in options:
        known = _FLAGS.get(option)
        if known is None:
            data.append(option)
        else:
            flags = (flags | known[0]) & ~known[1]
    return flags, ",".join(data)


_LIBC: list[object] = []


def _libc() -> object:
    if not _LIBC:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mount.argtypes = (ctypes.c_char_p,) * 3 + (ctypes.c_ulong, ctypes.c_char_p)
        libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
        _LIBC.append(libc)
    return _LIBC[0]


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    if (
        _libc().mount(
            source.encode(),
            target.encode(),
            fstype.encode(),
            flags,
            data.encode() if data else None,
        )
        != 0
    ):
        err = _errno()
        raise OSError(err, f"mount {source} on {target} ({fstype}): {os.strerror(err)}")


def umount(target: str, flags: int = MNT_DETACH) -> bool:
    """Unmount `target`; False if it was not a mountpoint (idempotent cleanup)."""
    if _libc().umount2(target.encode(), flags) != 0:
        err = _errno()
        if err in (22, 2):  # EINVAL: not a mountpoint; ENOENT: gone
            return False
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
    return True


def umount_all(target: str) -> None:
    """Lazily unmount every mount stacked on `target`."""
    while umount(target):
        pass


def fuse_connection(mountpoint: str) -> str | None:
    """The /sys/fs/fuse/connections entry of the FUSE mount at `mountpoint`, if mounted."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if parts[4] == mountpoint and " - fuse" in line:
                    return parts[2].split(":")[1]
    except OSError:
        pass
    return None


def abort_fuse(mountpoint: str) -> None:
    """Abort a (possibly dead) FUSE connection so nothing blocks on it any more."""
    conn = fuse_connection(mountpoint)
    if conn is None:
        return
    try:
        with open(f"/sys/fs/fuse/connections/{conn}/abort", "w") as f:
            f.write("1")
    except OSError:
        pass


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as `\\ooo` (octal)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountpoints() -> set[str]:
    """Every mountpoint in this mount namespace (octal escapes of mountinfo undone)."""
    points = set()
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                raw = line.split(" ", 5)[4]
                points.add(_unescape(raw))
    except OSError:
        pass
    return points
