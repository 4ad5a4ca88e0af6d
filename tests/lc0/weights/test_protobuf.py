from __future__ import annotations

import struct

import pytest

from leelalab.errors import CorruptWeightsError
from leelalab.lc0.weights.protobuf import (
    MAX_FIELD_NUMBER,
    MAX_FIELDS,
    Field,
    StreamChecker,
    decode,
    encode,
)

INNER = {1: Field("x", "uint32"), 2: Field("ys", "uint32", repeated=True)}
OUTER = {
    1: Field("magic", "fixed32"),
    2: Field("name", "string"),
    3: Field("value", "float"),
    4: Field("blob", "bytes"),
    5: Field("inner", "message", INNER),
    6: Field("items", "message", INNER, repeated=True),
}


def test_round_trip_all_kinds() -> None:
    message = {
        "magic": 0x1C0,
        "name": "héllo",
        "value": 0.5,
        "blob": b"\x00\x01\xff",
        "inner": {"x": 300, "ys": [1, 128, 2**31]},
        "items": [{"x": 1}, {"x": 2, "ys": [3]}],
    }
    decoded = decode(encode(message, OUTER), OUTER)
    assert decoded["magic"] == 0x1C0
    assert decoded["name"] == "héllo"
    assert decoded["value"] == 0.5
    assert bytes(decoded["blob"]) == b"\x00\x01\xff"
    assert decoded["inner"] == {"x": 300, "ys": [1, 128, 2**31]}
    assert decoded["items"] == [{"x": 1}, {"x": 2, "ys": [3]}]


def test_known_wire_bytes() -> None:
    # Hand-encoded: field 1 fixed32 0x1c0 is "0d c0 01 00 00" (how every lc0 file starts).
    assert encode({"magic": 0x1C0}, OUTER) == bytes.fromhex("0dc0010000")
    # field 1 varint 300 = 08 ac 02
    assert decode(bytes.fromhex("08ac02"), INNER) == {"x": 300}


def test_packed_repeated_scalars_are_accepted() -> None:
    packed = bytes([0x12, 0x03, 0x01, 0x02, 0x03])  # field 2, length 3, values 1 2 3
    unpacked = bytes([0x10, 0x01, 0x10, 0x02, 0x10, 0x03])
    assert decode(packed, INNER) == {"ys": [1, 2, 3]}
    assert decode(unpacked, INNER) == {"ys": [1, 2, 3]}


def test_unknown_fields_are_skipped() -> None:
    unknown = (
        bytes([0x78, 0x05])  # field 15 varint
        + bytes([0x82, 0x01, 0x02, 0xAA, 0xBB])  # field 16 length-delimited
        + bytes([0x8D, 0x01])
        + struct.pack("<f", 1.0)  # field 17 fixed32
        + bytes([0x91, 0x01])
        + bytes(8)  # field 18 fixed64
    )
    assert decode(unknown + bytes.fromhex("08ac02"), INNER) == {"x": 300}


def test_repeated_singular_message_is_merged() -> None:
    data = encode({"inner": {"x": 1, "ys": [5]}}, OUTER) + encode({"inner": {"ys": [6]}}, OUTER)
    assert decode(data, OUTER)["inner"] == {"x": 1, "ys": [5, 6]}


@pytest.mark.parametrize(
    "data",
    [
        bytes([0x08]),  # varint cut off
        bytes([0x08, 0xFF]),  # varint continuation cut off
        bytes([0x22, 0x05, 0x01]),  # bytes field longer than the data
        bytes([0x0D, 0x01, 0x02]),  # fixed32 cut off
        bytes([0x0B]),  # wire type 3 (groups) is not supported
        bytes([0x08] + [0xFF] * 11),  # varint longer than 10 bytes
    ],
)
def test_malformed_data_raises(data: bytes) -> None:
    with pytest.raises(CorruptWeightsError):
        decode(data, OUTER)


def test_wrong_wire_type_raises() -> None:
    with pytest.raises(CorruptWeightsError, match="wire type"):
        decode(bytes([0x15, 0, 0, 0, 0]), OUTER)  # field 2 (a string) sent as fixed32


def test_encode_rejects_unknown_keys() -> None:
    with pytest.raises(KeyError, match="typo"):
        encode({"typo": 1}, OUTER)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(8), "field number 0"),  # zeros: what a decompression bomb is made of
        (bytes([0x02, 0x00]), "field number 0"),  # field 0, length-delimited
        (bytes([0x0E]), "wire type 6"),
        (bytes([0x0F]), "wire type 7"),
        (bytes([0x0C]), "wire type 4"),
        (bytes([0xF8, 0xFF, 0xFF, 0xFF, 0x7F]), "too large"),  # field 2**32 - 1
        (bytes([0x78] + [0xFF] * 9 + [0x02]), "overflows 64 bits"),  # unknown field 15
    ],
)
def test_impossible_keys_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(CorruptWeightsError, match=message):
        decode(data, OUTER)


def test_the_largest_field_number_is_accepted_and_skipped() -> None:
    value, key = MAX_FIELD_NUMBER << 3, bytearray()  # an unknown varint field
    while value > 0x7F:
        key.append((value & 0x7F) | 0x80)
        value >>= 7
    key.append(value)
    assert decode(bytes(key) + b"\x00" + bytes.fromhex("08ac02"), INNER) == {"x": 300}


def test_millions_of_tiny_fields_are_rejected() -> None:
    # Valid wire data (an unknown varint field, over and over), but no lc0 network has
    # anywhere near that many fields; the bound keeps parsing time bounded.
    tiny_fields = bytes([0x78, 0x00]) * (MAX_FIELDS + 1)
    with pytest.raises(CorruptWeightsError, match="more than 100,000 fields"):
        decode(tiny_fields, INNER)
    assert decode(bytes([0x78, 0x00]) * 1000, INNER) == {}
    with pytest.raises(CorruptWeightsError, match="fields"):
        decode(bytes([0x12, 0x02, 0x01, 0x02]) * 10, INNER, max_fields=20)  # packed values count


def test_many_repeats_of_a_singular_message_merge_in_place() -> None:
    one = encode({"inner": {"ys": [1]}}, OUTER)
    assert decode(one * 5000, OUTER)["inner"] == {"ys": [1] * 5000}


def _nested_message() -> bytes:
    return encode(
        {
            "magic": 0x1C0,
            "name": "x" * 300,
            "blob": bytes(range(256)) * 3,
            "inner": {"x": 2**40, "ys": [1, 2**35]},
            "items": [{"x": i, "ys": [i] * 3} for i in range(20)],
        },
        OUTER,
    ) + bytes([0x78, 0x05, 0x82, 0x01, 0x02, 0xAA, 0xBB])  # unknown fields too


@pytest.mark.parametrize("piece", [1, 2, 7, 64, 10_000])
def test_stream_checker_accepts_valid_data_fed_in_pieces(piece: int) -> None:
    data = _nested_message()
    checker = StreamChecker(OUTER, max_bytes=1 << 20)
    for end in range(piece, len(data) + piece, piece):
        checker.feed(data[:end])
    checker.finish(len(data))


def test_stream_checker_rejects_garbage_at_its_first_byte() -> None:
    checker = StreamChecker(OUTER, max_bytes=1 << 30)
    with pytest.raises(CorruptWeightsError, match="field number 0"):
        checker.feed(bytes(1 << 20))
    # ... and inside a nested message, before the message's end has arrived.
    start = bytes([0x2A]) + bytes([0x80, 0x80, 0x40])  # field 5 (inner), length 1 MiB
    checker = StreamChecker(OUTER, max_bytes=1 << 30)
    with pytest.raises(CorruptWeightsError, match="field number 0"):
        checker.feed(start + bytes(16))


def test_stream_checker_rejects_lengths_beyond_the_limit_and_truncation() -> None:
    checker = StreamChecker(OUTER, max_bytes=1000)
    with pytest.raises(CorruptWeightsError, match="beyond the 1,000-byte size limit"):
        checker.feed(bytes([0x22, 0xE8, 0x07]))  # field 4 (bytes), 1000 bytes after 3
    checker = StreamChecker(OUTER, max_bytes=1000)
    with pytest.raises(CorruptWeightsError, match="runs past the end of its message"):
        checker.feed(bytes([0x2A, 0x02, 0x12, 0x05, 0x00]))  # inner: a 5-byte field in 2
    data = _nested_message()
    checker = StreamChecker(OUTER, max_bytes=1 << 20)
    checker.feed(data[:-3])
    with pytest.raises(CorruptWeightsError, match="truncated"):
        checker.finish(len(data) - 3)
