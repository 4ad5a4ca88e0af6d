from __future__ import annotations

import struct

import pytest

from leelalab.errors import CorruptWeightsError
from leelalab.lc0.weights.protobuf import Field, decode, encode

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
