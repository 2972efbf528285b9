"""shim/task/seccomp_notify.py against the real kernel: a forked child installs a filter that
notifies on sysinfo(2) (as runc does for a container) and hands us the listener fd.

Proves: our answer lands in the caller's struct; a caller blocked when the listener closes,
or calling after, gets ENOSYS at once (no hang); POLLHUP once no process uses the filter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import select
import socket
import struct

import pytest

from procfs.sysinfo import Sysinfo
from shim.task import seccomp_notify

_SECCOMP_NR = {"x86_64": 317, "aarch64": 277}.get(platform.machine())
pytestmark = pytest.mark.skipif(
    _SECCOMP_NR is None or os.geteuid() != 0, reason="x86_64/arm64, as root"
)
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_RET_USER_NOTIF, _RET_ALLOW = 0x7FC00000, 0x7FFF0000
_FLAG_NEW_LISTENER = 8
_RESULT = struct.Struct("=iiQ")  # rc, errno, totalram
ANSWER = Sysinfo(
    uptime=7,
    loads=(0, 0, 0),
    totalram=123 << 20,
    freeram=100 << 20,
    sharedram=0,
    bufferram=0,
    totalswap=0,
    freeswap=0,
    procs=3,
)


def _install_filter() -> int:
    """In the child: notify on native sysinfo, allow everything else; the listener fd."""
    insns = [
        (0x20, 0, 0, 4),
        (0x15, 0, 3, seccomp_notify.NATIVE_ARCH),
        (0x20, 0, 0, 0),
        (0x15, 0, 1, seccomp_notify.SYSINFO_NR),
        (0x06, 0, 0, _RET_USER_NOTIF),
        (0x06, 0, 0, _RET_ALLOW),
    ]
    code = b"".join(struct.pack("=HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("=HxxxxxxQ", len(insns), ctypes.addressof(buf))
    pbuf = ctypes.create_string_buffer(prog)
    if _LIBC.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl")
    fd = _LIBC.syscall(_SECCOMP_NR, 1, _FLAG_NEW_LISTENER, pbuf)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "seccomp")
    return fd


def _call_sysinfo() -> bytes:
    buf = ctypes.create_string_buffer(112)
    rc = _LIBC.sysinfo(buf)
    err = ctypes.get_errno() if rc else 0
    totalram = struct.unpack_from("=Q", buf.raw, 32)[0] * struct.unpack_from("=I", buf.raw, 104)[0]
    return _RESULT.pack(rc, err, totalram)


def _child(sock: socket.socket, calls: int) -> None:
    try:
        fd = _install_filter()
        socket.send_fds(sock, [b"fd"], [fd])
        os.close(fd)
        for _ in range(calls):
            sock.recv(1)  # go
            sock.sendall(_call_sysinfo())
    finally:
        os._exit(0)


def _spawn(calls: int) -> tuple[int, socket.socket, int]:
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        _child(child, calls)
    child.close()
    parent.settimeout(10)
    _, fds, _, _ = socket.recv_fds(parent, 16, 1)
    return pid, parent, fds[0]


def _result(sock: socket.socket) -> tuple[int, int, int]:
    return _RESULT.unpack(sock.recv(_RESULT.size, socket.MSG_WAITALL))


def test_answer_then_listener_gone():
    pid, sock, fd = _spawn(calls=2)
    try:
        sock.send(b"g")
        assert select.select([fd], [], [], 10)[0], "no notification"
        n = seccomp_notify.receive(fd)
        assert n is not None and n.native_sysinfo and n.pid == pid
        assert seccomp_notify.answer_with_bytes(fd, n, ANSWER.pack()) == "answered"
        assert _result(sock) == (0, 0, 123 << 20)

        os.close(fd)
        fd = -1
        sock.send(b"g")  # no listener any more: the kernel fails the call, nothing waits
        assert _result(sock) == (-1, errno.ENOSYS, 0)
    finally:
        if fd >= 0:
            os.close(fd)
        os.waitpid(pid, 0)
        sock.close()


def test_pending_call_fails_when_listener_closes():
    pid, sock, fd = _spawn(calls=1)
    try:
        sock.send(b"g")
        assert select.select([fd], [], [], 10)[0]
        os.close(fd)  # the caller is blocked in sysinfo right now
        fd = -1
        assert _result(sock) == (-1, errno.ENOSYS, 0)
    finally:
        if fd >= 0:
            os.close(fd)
        os.waitpid(pid, 0)
        sock.close()


def test_gone_caller_and_hangup():
    pid, sock, fd = _spawn(calls=0)
    try:
        os.waitpid(pid, 0)
        assert select.select([fd], [], [], 10)[0]
        assert seccomp_notify.hung_up(fd)
        assert not seccomp_notify.id_valid(fd, 12345)
    finally:
        os.close(fd)
        sock.close()


def test_bad_buffer_gets_efault():
    """A caller passing an unmapped pointer gets EFAULT, as from the kernel."""
    pid, sock, fd = _spawn(calls=1)
    try:
        sock.send(b"g")
        assert select.select([fd], [], [], 10)[0]
        n = seccomp_notify.receive(fd)
        assert n is not None
        bad = seccomp_notify.Notification(n.id, n.pid, n.nr, n.arch, (8, *n.args[1:]))
        assert seccomp_notify.answer_with_bytes(fd, bad, ANSWER.pack()) == "efault"
        assert _result(sock)[:2] == (-1, errno.EFAULT)
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
        sock.close()
