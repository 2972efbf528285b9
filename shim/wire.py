"""Just enough protobuf encoding for `start` and `delete` to stay stdlib-only.

The serving process uses the betterproto classes in protos/gen; these helpers exist so
the two short-lived subcommands don't pay for importing betterproto on every container.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing and collections.abc cost ~2 ms of every start/delete
if TYPE_CHECKING:
    from collections.abc import Iterator


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 → two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def timestamp(seconds: int, nanos: int) -> bytes:
    return varint_field(1, seconds) + varint_field(2, nanos)


def delete_response(pid: int, exit_status: int, seconds: int, nanos: int) -> bytes:
    """containerd.task.v2.DeleteResponse{pid, exit_status, exited_at}."""
    return (
        varint_field(1, pid)
        + varint_field(2, exit_status)
        + bytes_field(3, timestamp(seconds, nanos))
    )


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def typed_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value): varints as int, everything else as bytes.

    Raises ValueError on anything a protobuf parser would refuse (truncation, groups,
    field number 0), so garbage is told apart from a message with unknown fields.
    """
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise ValueError("invalid field number 0")
        if kind == 0:
            value, pos = _read_varint(data, pos)
            yield number, kind, value
            continue
        if kind == 2:
            length, pos = _read_varint(data, pos)
        elif kind == 1:
            length = 8
        elif kind == 5:
            length = 4
        else:
            raise ValueError(f"unsupported wire type {kind} (field {number})")
        if pos + length > end:
            raise ValueError(f"truncated field {number}")
        yield number, kind, data[pos : pos + length]
        pos += length


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) for varint and length-delimited fields."""
    for number, kind, value in typed_fields(data):
        if kind in (0, 2):
            yield number, value


def unpack_any(data: bytes) -> tuple[str, bytes]:
    """google.protobuf.Any → (type_url, value)."""
    type_url, value = "", b""
    for number, field_value in fields(data):
        if number == 1 and isinstance(field_value, bytes):
            type_url = field_value.decode()
        elif number == 2 and isinstance(field_value, bytes):
            value = field_value
    return type_url, value
