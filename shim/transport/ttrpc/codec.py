"""Sans-I/O ttrpc protocol: bytes in -> events out, calls -> bytes out.

No sockets here, so the framing rules (header layout, 4 MiB limit, stream-id rules, which
errors are answered on a stream and which kill the connection) are unit-testable and shared
by the anyio server and client.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from protos.gen.google.rpc import Status
from protos.gen.ttrpc import Request, Response
from shim.transport.errors import Code, RpcError

HEADER = struct.Struct(">IIBB")  # data length, stream id, message type, flags
HEADER_SIZE = HEADER.size  # 10
MAX_DATA_SIZE = 4 << 20  # 4 MiB, Go ttrpc's messageLengthMax
# The first header byte is reserved (always 0 because MAX_DATA_SIZE < 16 MiB); a length at or
# above this cannot come from a ttrpc peer, so the stream is garbage rather than oversized.
_RESERVED_LENGTH = 1 << 24
_MAX_STREAM_ID = (1 << 32) - 1
# Field 1 (status), wire type 2, length 0: Go always puts the status on the wire, while
# betterproto omits an all-default nested message.
_EMPTY_STATUS_FIELD = b"\x0a\x00"
# Bytes a Response/Status envelope adds around a status message (tags + varint lengths).
_STATUS_OVERHEAD = 32


class MessageType(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    DATA = 3


class Flag(IntFlag):
    REMOTE_CLOSED = 0x01
    REMOTE_OPEN = 0x02
    NO_DATA = 0x04


class ProtocolError(Exception):
    """The peer sent bytes that cannot be framed; the connection must be closed."""


class LocalProtocolError(Exception):
    """This side misused the state machine (e.g. answered a stream nobody asked on)."""


class FrameTooLarge(RpcError):
    """Refusal to encode a frame above the limit (the Go sender refuses too)."""

    def __init__(self, length: int, limit: int = MAX_DATA_SIZE) -> None:
        super().__init__(Code.RESOURCE_EXHAUSTED, oversize_message(length, limit))
        self.length = length


def oversize_message(length: int, limit: int = MAX_DATA_SIZE) -> str:
    return f"message length {length} exceed maximum message size of {limit}"


@dataclass(frozen=True)
class Frame:
    stream_id: int
    type: int
    flags: int
    data: bytes


@dataclass(frozen=True)
class OversizedFrame:
    """A frame whose body exceeded the limit; its body has been read and discarded."""

    stream_id: int
    type: int
    flags: int
    length: int


def encode_frame(
    stream_id: int, mtype: int, data: bytes, flags: int = 0, *, max_size: int = MAX_DATA_SIZE
) -> bytes:
    """Header + data as one buffer, so a single write never interleaves with another frame."""
    if len(data) > max_size:
        raise FrameTooLarge(len(data), max_size)
    if not 0 <= stream_id <= _MAX_STREAM_ID:
        raise LocalProtocolError(f"stream id {stream_id} out of range")
    return HEADER.pack(len(data), stream_id, mtype, flags) + data


class FrameReader:
    """Splits a byte stream into frames, however the bytes were chunked."""

    def __init__(self, max_size: int = MAX_DATA_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._header: tuple[int, int, int, int] | None = None
        self._discard = 0  # bytes of an oversized body still to skip

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held (non-zero at EOF means a truncated frame)."""
        return len(self._buf) + (HEADER_SIZE if self._header else 0) + self._discard

    def feed(self, data: bytes) -> list[Frame | OversizedFrame]:
        """Consume `data`; return every frame it completes. Raises ProtocolError on garbage."""
        self._buf += data
        out: list[Frame | OversizedFrame] = []
        while True:
            if self._header is None:
                if len(self._buf) < HEADER_SIZE:
                    return out
                header = HEADER.unpack_from(self._buf)
                del self._buf[:HEADER_SIZE]
                length = header[0]
                if length >= _RESERVED_LENGTH:
                    self._buf.clear()
                    raise ProtocolError(f"invalid frame header (length {length:#x})")
                self._header = header
                if length > self.max_size:
                    self._discard = length
            length, stream_id, mtype, flags = self._header
            if self._discard:
                skipped = min(self._discard, len(self._buf))
                del self._buf[:skipped]
                self._discard -= skipped
                if self._discard:
                    return out
                out.append(OversizedFrame(stream_id, mtype, flags, length))
            else:
                if len(self._buf) < length:
                    return out
                body = bytes(self._buf[:length])
                del self._buf[:length]
                out.append(Frame(stream_id, mtype, flags, body))
            self._header = None


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestReceived:
    """A well-formed request; answer it with `ServerConnection.send_response`."""

    stream_id: int
    request: Request
    flags: int = 0


@dataclass(frozen=True)
class StreamError:
    """A frame rejected by the framing layer; answer `stream_id` with this status."""

    stream_id: int
    code: Code
    message: str


@dataclass(frozen=True)
class ResponseReceived:
    """The response to a call made on this connection."""

    stream_id: int
    response: Response


ServerEvent = RequestReceived | StreamError


def encode_response(response: Response) -> bytes:
    """Serialize a Response with `status` always on the wire, as the Go server does."""
    if bytes(response.status):
        return bytes(response)
    # betterproto may or may not emit a default Status (it tracks explicit assignment).
    return _EMPTY_STATUS_FIELD + bytes(Response(payload=response.payload))


def status_response(code: Code | int, message: str) -> Response:
    return Response(status=Status(code=int(code), message=message))


class ServerConnection:
    """Server side of one connection: frames -> RequestReceived / StreamError events.

    Every event obliges the caller to send exactly one response on its stream id; the
    connection tracks that so a double or stray answer is caught as LocalProtocolError.
    """

    def __init__(self, max_size: int = MAX_DATA_SIZE) -> None:
        self._reader = FrameReader(max_size)
        self.max_size = max_size
        self._last_stream_id = 0
        self._owed: Counter[int] = Counter()  # stream id -> responses still owed

    @property
    def owed_streams(self) -> frozenset[int]:
        """Stream ids that still need a response."""
        return frozenset(self._owed)

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def receive_data(self, data: bytes) -> list[ServerEvent]:
        """Feed received bytes. Raises ProtocolError if the stream cannot be framed."""
        events: list[ServerEvent] = []
        for frame in self._reader.feed(data):
            event = self._on_frame(frame)
            if event is not None:
                self._owed[event.stream_id] += 1
                events.append(event)
        return events

    def _on_frame(self, frame: Frame | OversizedFrame) -> ServerEvent | None:
        sid = frame.stream_id
        if isinstance(frame, OversizedFrame):
            return StreamError(
                sid, Code.RESOURCE_EXHAUSTED, oversize_message(frame.length, self.max_size)
            )
        if frame.type == MessageType.REQUEST:
            if sid % 2 == 0:
                return StreamError(
                    sid, Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams"
                )
            if sid <= self._last_stream_id:
                return StreamError(
                    sid, Code.INVALID_ARGUMENT, "StreamID cannot be re-used and must increment"
                )
            self._last_stream_id = sid
            try:
                request = Request().parse(frame.data)
            except Exception as exc:
                return StreamError(sid, Code.INVALID_ARGUMENT, f"unmarshal request error: {exc}")
            return RequestReceived(sid, request, frame.flags)
        if frame.type == MessageType.DATA:
            # Only unary methods exist: data for a live stream is dropped (no double answer),
            # data for any other stream is answered like Go's v1.2 server does.
            if sid in self._owed:
                return None
            return StreamError(sid, Code.INVALID_ARGUMENT, "StreamID is no longer active")
        return None  # responses and unknown types are ignored

    def send_response(self, stream_id: int, response: Response) -> bytes:
        """Bytes answering `stream_id`. Raises FrameTooLarge (state unchanged) if too big."""
        if not self._owed[stream_id]:
            raise LocalProtocolError(f"no response owed on stream {stream_id}")
        data = encode_frame(
            stream_id, MessageType.RESPONSE, encode_response(response), max_size=self.max_size
        )
        self._owed[stream_id] -= 1
        if not self._owed[stream_id]:
            del self._owed[stream_id]
        return data

    def send_status(self, stream_id: int, code: Code | int, message: str) -> bytes:
        """Bytes answering `stream_id` with an error status and no payload.

        The message is cut to fit the frame limit, so an error can always be reported."""
        limit = self.max_size - _STATUS_OVERHEAD
        encoded = message.encode()
        if len(encoded) > limit:
            message = encoded[:limit].decode(errors="ignore")
        return self.send_response(stream_id, status_response(code, message))


class ClientConnection:
    """Client side of one connection: odd, strictly increasing stream ids; responses in."""

    def __init__(self, max_size: int = MAX_DATA_SIZE) -> None:
        self._reader = FrameReader(max_size)
        self.max_size = max_size
        self._next_stream_id = 1
        self._pending: set[int] = set()

    @property
    def pending_streams(self) -> frozenset[int]:
        return frozenset(self._pending)

    def send_request(self, request: Request) -> tuple[int, bytes]:
        """Allocate a stream id for `request` and return it with the bytes to send (flags 0 =
        unary). Raises FrameTooLarge without consuming an id."""
        data = bytes(request)
        if len(data) > self.max_size:
            raise FrameTooLarge(len(data), self.max_size)
        sid = self._next_stream_id
        if sid > _MAX_STREAM_ID:
            raise LocalProtocolError("stream ids exhausted on this connection")
        frame = encode_frame(sid, MessageType.REQUEST, data, max_size=self.max_size)
        self._next_stream_id += 2
        self._pending.add(sid)
        return sid, frame

    def forget(self, stream_id: int) -> None:
        """Stop waiting for `stream_id` (the call was abandoned); a late answer is dropped."""
        self._pending.discard(stream_id)

    def receive_data(self, data: bytes) -> list[ResponseReceived]:
        """Feed received bytes. Raises ProtocolError if the stream cannot be framed."""
        events: list[ResponseReceived] = []
        for frame in self._reader.feed(data):
            if frame.stream_id not in self._pending:
                continue  # unknown or abandoned stream
            if isinstance(frame, OversizedFrame):
                response = status_response(
                    Code.RESOURCE_EXHAUSTED, oversize_message(frame.length, self.max_size)
                )
            elif frame.type == MessageType.RESPONSE:
                try:
                    response = Response().parse(frame.data)
                except Exception as exc:
                    response = status_response(Code.UNKNOWN, f"unmarshal response error: {exc}")
            else:
                continue  # data frames / unknown types: unary calls only
            self._pending.discard(frame.stream_id)
            events.append(ResponseReceived(frame.stream_id, response))
        return events
