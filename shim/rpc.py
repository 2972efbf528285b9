"""Transport-neutral method table.

Services are described once and served by any transport (ttrpc today, gRPC later): a
transport decodes the payload with `Method.request`, awaits `Method.call`, and encodes the
returned message. Handlers signal failures with `shim.errors.RpcError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import betterproto

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
