"""RPC status codes and errors shared by every transport and service.

containerd classifies shim errors by gRPC *code* only (errdefs/errgrpc), so handlers raise
`RpcError` with the right code; the message follows containerd's "<context>: <class text>"
convention purely for human parity with the Go shims.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class Code(IntEnum):
    """gRPC status codes (ttrpc reuses google.golang.org/grpc/codes)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def of(cls, value: int) -> Code:
        """Map a wire value to a Code; values outside the table become UNKNOWN."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


def _with_context(context: str, text: str) -> str:
    return f"{context}: {text}" if context else text


class RpcError(Exception):
    """An error carrying a status code; transports send `code`/`message` unchanged."""

    def __init__(self, code: Code | int, message: str = "") -> None:
        super().__init__(message)
        self.code = Code.of(int(code))
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r})"

    # errdefs-style constructors: message = "<context>: <errdefs class text>".

    @classmethod
    def not_found(cls, context: str = "") -> RpcError:
        return cls(Code.NOT_FOUND, _with_context(context, "not found"))

    @classmethod
    def already_exists(cls, context: str = "") -> RpcError:
        return cls(Code.ALREADY_EXISTS, _with_context(context, "already exists"))

    @classmethod
    def invalid_argument(cls, context: str = "") -> RpcError:
        return cls(Code.INVALID_ARGUMENT, _with_context(context, "invalid argument"))

    @classmethod
    def failed_precondition(cls, context: str = "") -> RpcError:
        return cls(Code.FAILED_PRECONDITION, _with_context(context, "failed precondition"))

    @classmethod
    def conflict(cls, context: str = "") -> RpcError:
        """errdefs.ErrConflict: FailedPrecondition that containerd recognises by the suffix."""
        return cls(Code.FAILED_PRECONDITION, _with_context(context, "conflict"))

    @classmethod
    def unimplemented(cls, context: str = "") -> RpcError:
        return cls(Code.UNIMPLEMENTED, _with_context(context, "not implemented"))

    @classmethod
    def permission_denied(cls, context: str = "") -> RpcError:
        return cls(Code.PERMISSION_DENIED, _with_context(context, "permission denied"))

    @classmethod
    def resource_exhausted(cls, context: str = "") -> RpcError:
        return cls(Code.RESOURCE_EXHAUSTED, _with_context(context, "resource exhausted"))

    @classmethod
    def unavailable(cls, context: str = "") -> RpcError:
        return cls(Code.UNAVAILABLE, _with_context(context, "unavailable"))

    @classmethod
    def aborted(cls, context: str = "") -> RpcError:
        return cls(Code.ABORTED, _with_context(context, "aborted"))

    @classmethod
    def out_of_range(cls, context: str = "") -> RpcError:
        return cls(Code.OUT_OF_RANGE, _with_context(context, "out of range"))

    @classmethod
    def internal(cls, context: str = "") -> RpcError:
        return cls(Code.INTERNAL, _with_context(context, "internal"))

    @classmethod
    def unknown(cls, context: str = "") -> RpcError:
        return cls(Code.UNKNOWN, _with_context(context, "unknown"))

    @classmethod
    def deadline_exceeded(cls, context: str = "") -> RpcError:
        """Go's context.DeadlineExceeded text, optionally prefixed."""
        return cls(Code.DEADLINE_EXCEEDED, _with_context(context, "context deadline exceeded"))

    @classmethod
    def cancelled(cls, context: str = "") -> RpcError:
        return cls(Code.CANCELLED, _with_context(context, "context canceled"))


class ConnectionClosed(RpcError):
    """The connection died with calls outstanding (Go ttrpc's ErrClosed, "ttrpc: closed").

    It is an RpcError (code UNAVAILABLE) so callers catching RpcError see it too, and
    re-raising it from a handler reports a sensible status.
    """

    def __init__(self, message: str = "ttrpc: closed") -> None:
        super().__init__(Code.UNAVAILABLE, message)


# Order matters: the first matching class wins (subclasses before their bases).
_EXCEPTION_CODES: tuple[tuple[type[BaseException], Code], ...] = (
    (FileNotFoundError, Code.NOT_FOUND),
    # ESRCH: the Go shim reports a vanished process as NotFound ("process already finished").
    (ProcessLookupError, Code.NOT_FOUND),
    (FileExistsError, Code.ALREADY_EXISTS),
    (PermissionError, Code.PERMISSION_DENIED),
    (TimeoutError, Code.DEADLINE_EXCEEDED),
    # io.EOF -> OutOfRange; closed pipe / unexpected EOF -> FailedPrecondition (convertCode).
    (EOFError, Code.OUT_OF_RANGE),
    (BrokenPipeError, Code.FAILED_PRECONDITION),
    (NotImplementedError, Code.UNIMPLEMENTED),
)


def status_of(exc: BaseException) -> tuple[Code, str]:
    """Map any exception to a (code, message) pair, like Go ttrpc's convertCode.

    ValueError deliberately maps to UNKNOWN, not INVALID_ARGUMENT: Python raises it for
    programming mistakes far more often than Go's narrow os.ErrInvalid; handlers that
    validate input should raise `RpcError.invalid_argument(...)` explicitly.
    """
    if isinstance(exc, RpcError):
        return exc.code, exc.message
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        # A lone failure escaping a handler's task group: report the real error.
        return status_of(exc.exceptions[0])
    message = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL:
        return Code.INVALID_ARGUMENT, message
    for cls, code in _EXCEPTION_CODES:
        if isinstance(exc, cls):
            if code is Code.DEADLINE_EXCEEDED and not str(exc):
                message = "context deadline exceeded"
            return code, message
    return Code.UNKNOWN, message
