"""shim.transport.errors: codes, errdefs-style messages and exception mapping."""

from __future__ import annotations

import errno

import pytest

from shim.transport.errors import Code, ConnectionClosed, RpcError, status_of


def test_codes_match_grpc() -> None:
    assert len(Code) == 17
    assert (Code.OK, Code.NOT_FOUND, Code.UNIMPLEMENTED, Code.UNAUTHENTICATED) == (0, 5, 12, 16)
    assert Code.of(5) is Code.NOT_FOUND
    assert Code.of(99) is Code.UNKNOWN


def test_rpc_error_messages_follow_errdefs() -> None:
    err = RpcError.not_found("container abc")
    assert (err.code, err.message, str(err)) == (
        Code.NOT_FOUND,
        "container abc: not found",
        "container abc: not found",
    )
    assert RpcError.not_found().message == "not found"
    assert RpcError.unimplemented("checkpoint").message == "checkpoint: not implemented"
    assert RpcError.conflict("x").code == Code.FAILED_PRECONDITION
    assert RpcError.conflict("x").message.endswith(": conflict")
    assert RpcError.deadline_exceeded().message == "context deadline exceeded"
    assert RpcError(7, "raw").code is Code.PERMISSION_DENIED


def test_connection_closed() -> None:
    err = ConnectionClosed()
    assert isinstance(err, RpcError)
    assert (err.code, str(err)) == (Code.UNAVAILABLE, "ttrpc: closed")


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (RpcError.already_exists("task"), Code.ALREADY_EXISTS, "task: already exists"),
        (FileNotFoundError(errno.ENOENT, "gone"), Code.NOT_FOUND, "[Errno 2] gone"),
        (OSError(errno.ENOENT, "gone"), Code.NOT_FOUND, "[Errno 2] gone"),  # errno subclassing
        (ProcessLookupError(errno.ESRCH, "no proc"), Code.NOT_FOUND, "[Errno 3] no proc"),
        (FileExistsError("dup"), Code.ALREADY_EXISTS, "dup"),
        (PermissionError("nope"), Code.PERMISSION_DENIED, "nope"),
        (TimeoutError(), Code.DEADLINE_EXCEEDED, "context deadline exceeded"),
        (EOFError("eof"), Code.OUT_OF_RANGE, "eof"),
        (BrokenPipeError("pipe"), Code.FAILED_PRECONDITION, "pipe"),
        (OSError(errno.EINVAL, "bad"), Code.INVALID_ARGUMENT, "[Errno 22] bad"),
        (NotImplementedError(), Code.UNIMPLEMENTED, "NotImplementedError"),
        (ValueError("bad value"), Code.UNKNOWN, "bad value"),
        (RuntimeError("boom"), Code.UNKNOWN, "boom"),
        (ExceptionGroup("g", [FileNotFoundError("inner")]), Code.NOT_FOUND, "inner"),
    ],
)
def test_status_of(exc: BaseException, code: Code, message: str) -> None:
    assert status_of(exc) == (code, message)
