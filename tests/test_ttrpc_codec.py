"""Unit tests of the sans-I/O ttrpc codec (no sockets)."""

from __future__ import annotations

import struct

import pytest

from protos.gen.google.rpc import Status
from protos.gen.ttrpc import KeyValue, Request, Response
from shim.transport.errors import Code, RpcError
from shim.transport.ttrpc.codec import (
    HEADER_SIZE,
    MAX_DATA_SIZE,
    ClientConnection,
    Frame,
    FrameReader,
    FrameTooLarge,
    LocalProtocolError,
    MessageType,
    OversizedFrame,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ServerConnection,
    StreamError,
    encode_frame,
    encode_response,
)


def frame(sid: int, mtype: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">IIBB", len(data), sid, mtype, flags) + data


def req(service: str = "svc", method: str = "M", payload: bytes = b"") -> Request:
    return Request(service=service, method=method, payload=payload)


# --- framing ------------------------------------------------------------------------------


def test_header_layout_is_big_endian_10_bytes() -> None:
    data = encode_frame(0x01020305, MessageType.RESPONSE, b"abc", flags=0x04)
    assert HEADER_SIZE == 10
    assert data == b"\x00\x00\x00\x03" + b"\x01\x02\x03\x05" + b"\x02" + b"\x04" + b"abc"


def test_encode_refuses_oversized() -> None:
    encode_frame(1, MessageType.REQUEST, b"x" * MAX_DATA_SIZE)  # exactly the limit is fine
    with pytest.raises(FrameTooLarge) as info:
        encode_frame(1, MessageType.REQUEST, b"x" * (MAX_DATA_SIZE + 1))
    assert info.value.code == Code.RESOURCE_EXHAUSTED
    assert isinstance(info.value, RpcError)


def test_reader_one_byte_at_a_time() -> None:
    wire = frame(1, 1, b"hello") + frame(3, 1, b"") + frame(5, 3, b"x", 1)
    reader = FrameReader()
    out = []
    for i in range(len(wire)):
        out += reader.feed(wire[i : i + 1])
    assert out == [Frame(1, 1, 0, b"hello"), Frame(3, 1, 0, b""), Frame(5, 3, 1, b"x")]
    assert reader.buffered == 0


def test_reader_many_frames_in_one_chunk_and_partial_tail() -> None:
    wire = b"".join(frame(i, 2, bytes([i]) * i) for i in range(1, 40, 2))
    tail = frame(41, 2, b"tail")
    reader = FrameReader()
    out = reader.feed(wire + tail[:12])
    assert [f.stream_id for f in out] == list(range(1, 40, 2))
    assert all(f.data == bytes([f.stream_id]) * f.stream_id for f in out)
    assert reader.buffered == 12
    assert reader.feed(tail[12:]) == [Frame(41, 2, 0, b"tail")]


def test_reader_oversize_discards_body_then_continues() -> None:
    reader = FrameReader(max_size=8)
    big = frame(7, 1, b"B" * 20)
    after = frame(9, 1, b"ok")
    out = reader.feed(big[:15])  # header + part of the body: nothing yet
    assert out == []
    out = reader.feed(big[15:] + after)
    assert out == [OversizedFrame(7, 1, 0, 20), Frame(9, 1, 0, b"ok")]


def test_reader_garbage_is_fatal() -> None:
    with pytest.raises(ProtocolError):
        FrameReader().feed(b"GET / HTTP/1.1\r\n\r\n")


# --- server connection --------------------------------------------------------------------


def test_server_request_round_trip() -> None:
    server = ServerConnection()
    client = ClientConnection()
    request = Request(
        service="containerd.task.v2.Task",
        method="State",
        payload=b"\x0a\x02id",
        timeout_nano=5_000_000_000,
        metadata=[KeyValue(key="containerd-namespace-ttrpc", value="default")],
    )
    sid, data = client.send_request(request)
    assert sid == 1
    assert data[8:10] == b"\x01\x00"  # type request, flags 0 (unary)
    (event,) = server.receive_data(data)
    assert isinstance(event, RequestReceived)
    assert event.stream_id == 1
    assert event.request.to_dict() == request.to_dict()
    assert server.owed_streams == {1}

    out = server.send_response(1, Response(status=Status(), payload=b"\x08\x01"))
    assert out[4:10] == b"\x00\x00\x00\x01\x02\x00"  # stream 1, type response, no flags
    assert server.owed_streams == frozenset()
    (resp,) = client.receive_data(out)
    assert resp == ResponseReceived(1, resp.response)
    assert resp.response.status.code == 0
    assert resp.response.payload == b"\x08\x01"
    assert client.pending_streams == frozenset()


def test_response_always_carries_status() -> None:
    # Go always sets status; betterproto alone would omit an all-default Status.
    assert encode_response(Response(status=Status(), payload=b"")) == b"\x0a\x00"
    assert encode_response(Response(status=Status(code=Code.OK))) == b"\x0a\x00"
    assert encode_response(Response(payload=b"p")) == b"\x0a\x00\x12\x01p"
    assert encode_response(Response(status=Status(code=5, message="x"))) == bytes(
        Response(status=Status(code=5, message="x"))
    )


def test_zero_length_payloads() -> None:
    server = ServerConnection()
    (event,) = server.receive_data(frame(1, 1, b""))  # empty Request envelope is legal
    assert isinstance(event, RequestReceived)
    assert event.request.service == "" and event.request.payload == b""
    out = server.send_response(1, Response())
    assert struct.unpack(">I", out[:4])[0] == 2  # only the empty status field


def test_even_stream_id_rejected() -> None:
    server = ServerConnection()
    (event,) = server.receive_data(frame(2, 1, bytes(req())))
    assert event == StreamError(
        2, Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams"
    )
    # The error is answered on the offending stream.
    out = server.send_status(2, event.code, event.message)
    assert struct.unpack(">I", out[4:8])[0] == 2
    parsed = Response().parse(out[10:])
    assert parsed.status.code == Code.INVALID_ARGUMENT


def test_reused_or_decreasing_stream_id_rejected() -> None:
    server = ServerConnection()
    events = server.receive_data(
        frame(5, 1, bytes(req())) + frame(5, 1, bytes(req())) + frame(3, 1, bytes(req()))
    )
    assert isinstance(events[0], RequestReceived)
    msg = "StreamID cannot be re-used and must increment"
    assert events[1:] == [
        StreamError(5, Code.INVALID_ARGUMENT, msg),
        StreamError(3, Code.INVALID_ARGUMENT, msg),
    ]
    # Stream 5 is owed two answers (the handler's and the rejection), stream 3 one.
    server.send_response(5, Response())
    server.send_response(5, Response())
    server.send_response(3, Response())
    with pytest.raises(LocalProtocolError):
        server.send_response(5, Response())


def test_oversize_request_answered_resource_exhausted_and_stream_continues() -> None:
    server = ServerConnection(max_size=16)
    wire = frame(1, 1, b"x" * 17) + frame(3, 1, bytes(req(method="After")))
    events = []
    for i in range(0, len(wire), 5):
        events += server.receive_data(wire[i : i + 5])
    assert events[0] == StreamError(
        1, Code.RESOURCE_EXHAUSTED, "message length 17 exceed maximum message size of 16"
    )
    assert isinstance(events[1], RequestReceived)
    assert events[1].stream_id == 3 and events[1].request.method == "After"


def test_real_limit_is_4_mib() -> None:
    server = ServerConnection()
    header = struct.pack(">IIBB", MAX_DATA_SIZE + 1, 1, 1, 0)
    assert server.receive_data(header) == []
    assert server.receive_data(b"\0" * MAX_DATA_SIZE) == []
    (event,) = server.receive_data(b"\0")
    assert event.code == Code.RESOURCE_EXHAUSTED
    assert event.message == "message length 4194305 exceed maximum message size of 4194304"


def test_oversize_response_refused_without_consuming_the_stream() -> None:
    server = ServerConnection(max_size=128)
    server.receive_data(frame(1, 1, b""))
    with pytest.raises(FrameTooLarge):
        server.send_response(1, Response(payload=b"x" * 200))
    assert server.owed_streams == {1}
    server.send_status(1, Code.RESOURCE_EXHAUSTED, "too big")
    assert server.owed_streams == frozenset()


def test_huge_status_message_is_truncated_to_fit() -> None:
    server = ServerConnection(max_size=128)
    server.receive_data(frame(1, 1, b""))
    out = server.send_status(1, Code.UNKNOWN, "é" * 500)
    assert len(out) <= HEADER_SIZE + 128
    assert Response().parse(out[10:]).status.message.startswith("éé")


def test_unparseable_request_envelope() -> None:
    server = ServerConnection()
    (event,) = server.receive_data(frame(1, 1, b"\x12"))  # field 2, length missing
    assert isinstance(event, StreamError)
    assert event.code == Code.INVALID_ARGUMENT
    assert event.message.startswith("unmarshal request error: ")


def test_unknown_types_and_responses_ignored_by_server() -> None:
    server = ServerConnection()
    events = server.receive_data(
        frame(1, 0x7F, b"junk") + frame(1, 2, b"") + frame(1, 1, bytes(req()))
    )
    assert [type(e) for e in events] == [RequestReceived]


def test_data_frames() -> None:
    server = ServerConnection()
    server.receive_data(frame(1, 1, bytes(req())))
    assert server.receive_data(frame(1, 3, b"d")) == []  # live unary stream: dropped
    server.send_response(1, Response())
    (event,) = server.receive_data(frame(1, 3, b"d"))
    assert event == StreamError(1, Code.INVALID_ARGUMENT, "StreamID is no longer active")


def test_send_response_for_unknown_stream_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().send_response(1, Response())


# --- client connection --------------------------------------------------------------------


def test_client_allocates_odd_increasing_ids() -> None:
    client = ClientConnection()
    ids = [client.send_request(req())[0] for _ in range(5)]
    assert ids == [1, 3, 5, 7, 9]
    assert client.pending_streams == set(ids)


def test_client_oversized_request_does_not_consume_id() -> None:
    client = ClientConnection(max_size=8)
    with pytest.raises(FrameTooLarge):
        client.send_request(req(payload=b"x" * 64))
    assert client.send_request(req())[0] == 1


def test_client_out_of_order_and_unknown_responses() -> None:
    client = ClientConnection()
    for _ in range(3):
        client.send_request(req())
    wire = (
        frame(5, 2, bytes(Response(payload=b"five")))
        + frame(99, 2, b"")  # nobody asked
        + frame(1, 3, b"data")  # not a response
        + frame(1, 2, encode_response(Response(status=Status(code=5, message="x: not found"))))
    )
    events = client.receive_data(wire)
    assert [e.stream_id for e in events] == [5, 1]
    assert events[0].response.payload == b"five"
    assert events[1].response.status.code == Code.NOT_FOUND
    assert client.pending_streams == {3}


def test_client_forget_drops_late_answer() -> None:
    client = ClientConnection()
    sid, _ = client.send_request(req())
    client.forget(sid)
    assert client.receive_data(frame(sid, 2, b"")) == []


def test_client_oversized_response_fails_that_call() -> None:
    client = ClientConnection(max_size=8)
    client.send_request(req())
    client.send_request(req())
    (event,) = client.receive_data(frame(1, 2, b"y" * 9) + frame(3, 2, b"")[:4])
    assert event.stream_id == 1
    assert event.response.status.code == Code.RESOURCE_EXHAUSTED


def test_client_garbage_is_fatal() -> None:
    with pytest.raises(ProtocolError):
        ClientConnection().receive_data(b"\xff" * 10)
