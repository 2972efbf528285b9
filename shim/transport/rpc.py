"""Transport-neutral method table.

Services are described once and served by any transport (ttrpc today, gRPC later): a
transport decodes the payload with `Method.request`, awaits `Method.call`, and encodes the
returned message. Handlers signal failures with `shim.transport.errors.RpcError`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import betterproto

from shim import priority, trace
from shim.transport.errors import Code, RpcError, status_of

Message = betterproto.Message


@dataclass(frozen=True)
class Method:
    """One unary RPC: its request type and the coroutine function handling it."""

    request: type[Message]
    call: Callable[[Any], Awaitable[Message]]


# service full name (e.g. "containerd.task.v2.Task") -> method name (e.g. "Create") -> Method
Services = Mapping[str, Mapping[str, Method]]

# Request metadata: lower-cased key -> values in arrival order (keys may repeat on the wire).
Metadata = Mapping[str, tuple[str, ...]]

_EMPTY: Metadata = MappingProxyType({})
_metadata: ContextVar[Metadata] = ContextVar("shim_rpc_metadata", default=_EMPTY)


def request_metadata() -> Metadata:
    """Metadata of the request being handled (e.g. "containerd-namespace-ttrpc").

    Handlers read it here so their signature stays `call(request)` on every transport.
    """
    return _metadata.get()


@contextmanager
def bound_metadata(pairs: Iterable[tuple[str, str]]) -> Iterator[None]:
    """Make `pairs` the current request metadata (used by transports around a call)."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key.lower(), []).append(value)
    token = _metadata.set(MappingProxyType({k: tuple(v) for k, v in grouped.items()}))
    try:
        yield
    finally:
        _metadata.reset(token)


@dataclass(frozen=True)
class Outcome:
    """What a transport sends back: a status, and the encoded reply when it is OK."""

    code: Code
    message: str = ""
    payload: bytes = b""


async def invoke(
    method: Method,
    data: bytes,
    metadata: Iterable[tuple[str, str]],
    *,
    name: str,
    log: logging.Logger,
    unmarshal_error: str,
) -> Outcome:
    """decode -> call -> encode with the shared error mapping; every transport uses this.

    A payload that does not decode is INTERNAL (as Go ttrpc/grpc answer); an RpcError keeps
    its code and message; anything else is classified by `status_of` and logged with its
    traceback. Cancellation (a transport's deadline, a closed connection) propagates.
    """
    call = name.rsplit("/", 1)[-1]
    trace.mark(f"rpc {call}")
    try:
        request = method.request().parse(data)
    except Exception as exc:
        return Outcome(Code.INTERNAL, f"{unmarshal_error}: {exc}")
    try:
        # Wait is left out: containerd keeps one open per process for its whole life.
        with bound_metadata(metadata), priority.control() if call != "Wait" else nullcontext():
            reply = await method.call(request)
        if not isinstance(reply, betterproto.Message):
            raise TypeError(f"handler returned {type(reply).__name__}, not a message")
        trace.mark(f"rpc {call} done")
        return Outcome(Code.OK, payload=bytes(reply))
    except RpcError as exc:
        log.debug("%s: %s %s", name, exc.code.name, exc.message)
        return Outcome(exc.code, exc.message)
    except Exception as exc:
        code, message = status_of(exc)
        log.error("%s failed: %s", name, message, exc_info=exc)
        return Outcome(code, message)
