"""Just enough of the protobuf wire format for Flight SQL's messages: varints and
length-delimited fields, read into ``{field number: [values]}`` and written back."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ProtobufError", "decode", "encode", "pack_any", "unpack_any"]

_TYPE_PREFIX = "type.googleapis.com/"


class ProtobufError(ValueError):
    """Bytes that are not a protobuf message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def decode(data: bytes) -> dict[int, list[int | bytes]]:
    """The fields of a message: varints as ints, length-delimited fields as bytes."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            fields.setdefault(number, []).append(value)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            fields.setdefault(number, []).append(data[pos : pos + size])
            pos += size
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return fields


def _write_varint(value: int) -> bytes:
    """``value`` as a varint; a negative one as protobuf writes an int64, in ten bytes of
    two's complement."""
    if value < 0:
        if value < -(1 << 63):
            raise ProtobufError(f"{value} is below the int64 range")
        value += 1 << 64
    elif value >= 1 << 64:
        raise ProtobufError(f"{value} is past the uint64 range")
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def encode(fields: Iterable[tuple[int, int | bytes | str]]) -> bytes:
    """A message of ``(field number, value)`` pairs: ints as varints, text and bytes
    length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, bool | int):
            out += _write_varint(number << 3) + _write_varint(int(value))
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += _write_varint(number << 3 | 2) + _write_varint(len(raw)) + raw
    return bytes(out)


def pack_any(message_name: str, body: bytes) -> bytes:
    """``google.protobuf.Any`` holding ``body`` of type ``message_name``."""
    return encode([(1, _TYPE_PREFIX + message_name), (2, body)])


def unpack_any(data: bytes) -> tuple[str, bytes] | None:
    """The message name and body of an ``Any``, or None when ``data`` is not one."""
    try:
        fields = decode(data)
    except ProtobufError:
        return None
    url = fields.get(1, [b""])[0]
    body = fields.get(2, [b""])[0]
    if not isinstance(url, bytes) or not isinstance(body, bytes):
        return None
    text = url.decode("utf-8", "replace")
    if not text.startswith(_TYPE_PREFIX):
        return None
    return text[len(_TYPE_PREFIX) :], body
