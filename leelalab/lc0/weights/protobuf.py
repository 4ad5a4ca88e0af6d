"""A small, schema-driven protobuf (proto2) wire-format codec.

lc0 files are one ``pblczero.Net`` message. We read and write them with this codec rather
than the ``protobuf`` package: it needs no generated code (whose version is coupled to the
protobuf runtime), it can hand out zero-copy ``memoryview`` slices of the large weight blobs,
and the writer is the exact inverse of the reader, which the tests rely on.

A schema maps field numbers to :class:`Field` descriptions. Decoded messages are plain
``dict[str, Any]``; repeated fields are lists; unknown fields are skipped, as protobuf does.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from leelalab.errors import CorruptWeightsError

FieldKind = Literal["uint32", "uint64", "enum", "float", "fixed32", "string", "bytes", "message"]

# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_WIRE_TYPE: dict[str, int] = {
    "uint32": _VARINT,
    "uint64": _VARINT,
    "enum": _VARINT,
    "float": _FIXED32,
    "fixed32": _FIXED32,
    "string": _LENGTH_DELIMITED,
    "bytes": _LENGTH_DELIMITED,
    "message": _LENGTH_DELIMITED,
}


@dataclass(frozen=True)
class Field:
    """One field of a message schema."""

    name: str
    kind: FieldKind
    message: Schema | None = None
    """The nested schema, for ``kind == "message"``."""
    repeated: bool = False


Schema = Mapping[int, Field]


MAX_FIELD_NUMBER = (1 << 29) - 1
"""The largest field number protobuf allows."""
MAX_FIELDS = 100_000
"""Fields (and packed values) one file may hold. The largest lc0 networks (BT4: 15 encoder
layers with smolgen) hold a few thousand; the bound keeps garbage that happens to be valid
wire data (millions of tiny fields) from costing minutes of parsing."""


class _Budget:
    __slots__ = ("left", "limit")

    def __init__(self, fields: int) -> None:
        self.left = self.limit = fields

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise CorruptWeightsError(
                f"malformed protobuf data (more than {self.limit:,} fields; lc0 networks have "
                "a few thousand)"
            )


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    read = _read_varint_upto(buf, pos, len(buf))
    if read is None:
        raise CorruptWeightsError("truncated protobuf data (varint runs past the end)")
    return read


def _split_key(key: int) -> tuple[int, int]:
    """Field number and wire type of a key, rejecting what no valid encoder writes."""
    number, wire_type = key >> 3, key & 7
    if number == 0:
        raise CorruptWeightsError("malformed protobuf data (field number 0)")
    if number > MAX_FIELD_NUMBER:
        raise CorruptWeightsError(f"malformed protobuf data (field number {number} is too large)")
    if wire_type not in (_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32):
        # 3 and 4 are proto2 groups, which lc0's schema never uses; 6 and 7 do not exist.
        raise CorruptWeightsError(f"malformed protobuf data (wire type {wire_type})")
    return number, wire_type


def _skip(buf: memoryview, pos: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _read_varint(buf, pos)[1]
    if wire_type == _FIXED64:
        return pos + 8
    if wire_type == _FIXED32:
        return pos + 4
    length, pos = _read_varint(buf, pos)
    return pos + length


def decode(
    buf: bytes | bytearray | memoryview, schema: Schema, *, max_fields: int = MAX_FIELDS
) -> dict[str, Any]:
    """Decode one message.

    ``bytes`` fields come back as ``memoryview`` slices of ``buf`` (no copy).

    Raises:
        CorruptWeightsError: the data is truncated, not a valid encoding of ``schema``, or
            holds more than ``max_fields`` fields.
    """
    return _decode(memoryview(buf), schema, _Budget(max_fields))


def _decode(view: memoryview, schema: Schema, budget: _Budget) -> dict[str, Any]:
    message: dict[str, Any] = {}
    pos, end = 0, len(view)
    while pos < end:
        budget.spend()
        key, pos = _read_varint(view, pos)
        number, wire_type = _split_key(key)
        field = schema.get(number)
        if field is None:
            pos = _skip(view, pos, wire_type)
            if pos > end:
                raise CorruptWeightsError("truncated protobuf data (unknown field runs past end)")
            continue
        expected = _WIRE_TYPE[field.kind]
        if wire_type == _LENGTH_DELIMITED and expected != _LENGTH_DELIMITED and field.repeated:
            # A packed repeated scalar.
            length, pos = _read_varint(view, pos)
            if pos + length > end:
                raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
            values = message.setdefault(field.name, [])
            values.extend(_decode_packed(view[pos : pos + length], field, budget))
            pos += length
            continue
        if wire_type != expected:
            raise CorruptWeightsError(
                f"malformed protobuf data: field '{field.name}' has wire type {wire_type}, "
                f"expected {expected}"
            )
        value, pos = _decode_value(view, pos, field, budget)
        if pos > end:
            raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
        if field.repeated:
            message.setdefault(field.name, []).append(value)
        elif field.kind == "message" and field.name in message:
            # proto2 merges repeated occurrences of a singular message field.
            _merge_into(message[field.name], value)
        else:
            message[field.name] = value
    return message


def _merge_into(old: dict[str, Any], new: dict[str, Any]) -> None:
    # In place (the decoder owns both), so that many repeats cost linear time.
    for key, value in new.items():
        if isinstance(value, list) and isinstance(old.get(key), list):
            old[key].extend(value)
        elif isinstance(value, dict) and isinstance(old.get(key), dict):
            _merge_into(old[key], value)
        else:
            old[key] = value


def _decode_value(view: memoryview, pos: int, field: Field, budget: _Budget) -> tuple[Any, int]:
    kind = field.kind
    if kind in ("uint32", "uint64", "enum"):
        return _read_varint(view, pos)
    if kind in ("float", "fixed32"):
        if pos + 4 > len(view):
            raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
        fmt = "<f" if kind == "float" else "<I"
        return struct.unpack_from(fmt, view, pos)[0], pos + 4
    length, pos = _read_varint(view, pos)
    if pos + length > len(view):
        raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
    chunk = view[pos : pos + length]
    if kind == "bytes":
        return chunk, pos + length
    if kind == "string":
        try:
            return bytes(chunk).decode("utf-8"), pos + length
        except UnicodeDecodeError as error:
            raise CorruptWeightsError(f"field '{field.name}' is not valid UTF-8") from error
    assert field.message is not None
    return _decode(chunk, field.message, budget), pos + length


def _decode_packed(view: memoryview, field: Field, budget: _Budget) -> list[Any]:
    values: list[Any] = []
    pos = 0
    while pos < len(view):
        budget.spend()
        value, pos = _decode_value(view, pos, field, budget)
        values.append(value)
    return values


class StreamChecker:
    """Checks the wire structure of a message while its bytes are still arriving.

    :meth:`feed` is given the growing buffer (everything so far) and walks every key and
    length, descending into the fields that ``schema`` says are messages and jumping over
    everything else. Garbage is therefore rejected as soon as it is decompressed, rather
    than after all of it has been (a gzip bomb of zeros fails on its first byte), and a
    length beyond ``max_bytes`` is rejected before the bytes it announces are produced.
    """

    def __init__(self, schema: Schema, *, max_bytes: int, max_fields: int = MAX_FIELDS) -> None:
        # (schema of the open message or None for an unknown one, offset where it ends)
        self._stack: list[tuple[Schema, int]] = [(schema, max_bytes)]
        self._pos = 0
        self._budget = _Budget(max_fields)
        self._max_bytes = max_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Advance over the complete fields of ``data`` (all bytes received so far)."""
        view = memoryview(data)
        available = len(view)
        stack = self._stack
        while True:
            while len(stack) > 1 and self._pos >= stack[-1][1]:
                if self._pos > stack[-1][1]:
                    raise CorruptWeightsError(
                        "malformed protobuf data (a field runs past the end of its message)"
                    )
                stack.pop()
            if self._pos >= available:
                return
            schema, end = stack[-1]
            limit = min(end, available)
            key_and_pos = _read_varint_upto(view, self._pos, limit)
            if key_and_pos is None:
                self._incomplete(end, available)
                return
            self._budget.spend()
            number, wire_type = _split_key(key_and_pos[0])
            pos = key_and_pos[1]
            field = schema.get(number)
            expected = None if field is None else _WIRE_TYPE[field.kind]
            if expected is not None and wire_type != expected:
                packed = wire_type == _LENGTH_DELIMITED and field is not None and field.repeated
                if not packed:
                    assert field is not None
                    raise CorruptWeightsError(
                        f"malformed protobuf data: field '{field.name}' has wire type "
                        f"{wire_type}, expected {expected}"
                    )
            if wire_type == _VARINT:
                value_and_pos = _read_varint_upto(view, pos, limit)
                if value_and_pos is None:
                    self._incomplete(end, available)
                    return
                self._pos = value_and_pos[1]
            elif wire_type in (_FIXED32, _FIXED64):
                self._pos = self._within(pos + (4 if wire_type == _FIXED32 else 8), end)
            else:
                length_and_pos = _read_varint_upto(view, pos, limit)
                if length_and_pos is None:
                    self._incomplete(end, available)
                    return
                length, pos = length_and_pos
                field_end = self._within(pos + length, end)
                if field is not None and field.kind == "message" and wire_type == expected:
                    assert field.message is not None
                    stack.append((field.message, field_end))
                    self._pos = pos
                else:
                    self._pos = field_end

    def finish(self, total: int) -> None:
        """Check that the message ended exactly at ``total`` bytes, after the last feed."""
        if self._pos != total or len(self._stack) > 1:
            raise CorruptWeightsError("truncated protobuf data (the message ends mid-field)")

    def _within(self, field_end: int, end: int) -> int:
        if field_end > end:
            if end == self._max_bytes and len(self._stack) == 1:
                raise CorruptWeightsError(
                    f"malformed protobuf data (a field ends at byte {field_end:,}, beyond the "
                    f"{self._max_bytes:,}-byte size limit)"
                )
            raise CorruptWeightsError(
                "malformed protobuf data (a field runs past the end of its message)"
            )
        return field_end

    def _incomplete(self, end: int, available: int) -> None:
        # A varint cut off by the end of its message (rather than by the data so far).
        if end <= available:
            raise CorruptWeightsError(
                "malformed protobuf data (a varint runs past the end of its message)"
            )


def _read_varint_upto(buf: memoryview, pos: int, limit: int) -> tuple[int, int] | None:
    """A varint that must end before ``limit``; ``None`` if it does not end there."""
    result = 0
    shift = 0
    while pos < limit:
        byte = buf[pos]
        pos += 1
        if shift == 63 and byte > 1:
            raise CorruptWeightsError("malformed protobuf data (varint overflows 64 bits)")
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    return None


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # proto2 encodes negative int32/enums as 10-byte varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(message: Mapping[str, Any], schema: Schema) -> bytes:
    """Encode ``message`` (as produced by :func:`decode`) in field-number order.

    Keys not in ``schema`` are an error, so that a typo cannot silently drop a layer.
    """
    by_name = {field.name: (number, field) for number, field in schema.items()}
    unknown = set(message) - set(by_name)
    if unknown:
        raise KeyError(f"fields not in the schema: {sorted(unknown)}")
    parts: list[bytes] = []
    for number, field in sorted(schema.items()):
        if field.name not in message or message[field.name] is None:
            continue
        value = message[field.name]
        values = value if field.repeated else [value]
        key = _encode_varint((number << 3) | _WIRE_TYPE[field.kind])
        for item in values:
            parts.append(key)
            parts.append(_encode_value(item, field))
    return b"".join(parts)


def _encode_value(value: Any, field: Field) -> bytes:
    kind = field.kind
    if kind in ("uint32", "uint64", "enum"):
        return _encode_varint(int(value))
    if kind == "float":
        return struct.pack("<f", float(value))
    if kind == "fixed32":
        return struct.pack("<I", int(value))
    if kind == "string":
        data = str(value).encode("utf-8")
    elif kind == "bytes":
        data = bytes(value)
    else:
        assert field.message is not None
        data = encode(value, field.message)
    return _encode_varint(len(data)) + data
