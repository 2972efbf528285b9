"""The kernel's seccomp user-notification interface (seccomp_unotify(2)), for one syscall.

A filter's ``SCMP_ACT_NOTIFY`` rule stops the calling thread and queues a notification on the
listener fd that runc hands us. Here: read it (``SECCOMP_IOCTL_NOTIF_RECV``), write a result
into the caller's memory, and answer (``SECCOMP_IOCTL_NOTIF_SEND``). The caller may die or be
interrupted meanwhile and its pid reused, so the memory is opened first (the fd pins that
process's mm) and the notification id is checked valid after the open and again after the
write, the order seccomp_unotify(2) prescribes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import select
import struct
from dataclasses import dataclass

# ioctl numbers: _IOWR('!', 0, struct seccomp_notif) etc. (linux/seccomp.h)
_NOTIF = struct.Struct("=QII iI Q 6Q")  # id, pid, flags, seccomp_data{nr, arch, ip, args[6]}
_RESP = struct.Struct("=QqiI")  # id, val, error, flags
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("!") << 8) | nr


NOTIF_RECV = _ioc(_IOC_READ | _IOC_WRITE, 0, _NOTIF.size)
NOTIF_SEND = _ioc(_IOC_READ | _IOC_WRITE, 1, _RESP.size)
NOTIF_ID_VALID = _ioc(_IOC_WRITE, 2, 8)
FLAG_CONTINUE = 1

#: machine → (AUDIT_ARCH_* of native 64-bit callers, their sysinfo syscall number).
_NATIVE = {
    "x86_64": (0xC000003E, 99),
    "aarch64": (0xC00000B7, 179),
    "ppc64le": (0xC0000015, 116),
    "s390x": (0x80000016, 116),
}
NATIVE_ARCH, SYSINFO_NR = _NATIVE.get(platform.machine(), (None, None))


def supported() -> bool:
    """We know this machine's struct layout and syscall number."""
    return NATIVE_ARCH is not None


@dataclass(frozen=True)
class Notification:
    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, ...]

    @property
    def native_sysinfo(self) -> bool:
        return self.arch == NATIVE_ARCH and self.nr == SYSINFO_NR


def receive(fd: int) -> Notification | None:
    """The next notification, or None when it vanished (caller interrupted: ENOENT)."""
    buf = bytearray(_NOTIF.size)  # the kernel insists on a zeroed struct
    try:
        fcntl.ioctl(fd, NOTIF_RECV, buf, True)
    except InterruptedError:
        return None
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    nid, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buf)
    return Notification(nid, pid, nr, arch, tuple(args))


def id_valid(fd: int, nid: int) -> bool:
    """The caller is still blocked in this very syscall (so its pid is still its own)."""
    try:
        fcntl.ioctl(fd, NOTIF_ID_VALID, struct.pack("=Q", nid))
    except OSError:
        return False
    return True


def respond(fd: int, nid: int, *, val: int = 0, error: int = 0, flags: int = 0) -> bool:
    """Answer; False when the caller is gone (its syscall was interrupted or it died)."""
    try:
        fcntl.ioctl(fd, NOTIF_SEND, bytearray(_RESP.pack(nid, val, -error, flags)), True)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EINTR):
            return False
        raise
    return True


def hung_up(fd: int) -> bool:
    """No process uses the filter any more (the kernel reports POLLHUP since 5.8)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return any(
        ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN for _, ev in p.poll(0)
    )


def answer_with_bytes(fd: int, n: Notification, data: bytes) -> str:
    """Copy ``data`` to the caller's buffer (``args[0]``) and complete its call with 0.

    Returns what happened ("answered", "gone", "efault") for logs and tests.
    """
    try:
        mem = os.open(f"/proc/{n.pid}/mem", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return "gone"
    try:
        if not id_valid(fd, n.id):  # mem may belong to a new process with the old pid
            return "gone"
        try:
            written = os.pwrite(mem, data, n.args[0])
        except (OSError, OverflowError):
            written = -1
        if written != len(data):
            return "efault" if respond(fd, n.id, error=errno.EFAULT) else "gone"
        if not id_valid(fd, n.id):
            return "gone"
        return "answered" if respond(fd, n.id, val=0) else "gone"
    finally:
        os.close(mem)


def let_kernel_answer(fd: int, n: Notification) -> bool:
    """Run the syscall natively (a caller we do not emulate, e.g. a 32-bit process)."""
    return respond(fd, n.id, flags=FLAG_CONTINUE)
