"""BER-TLV: multi-byte tags, long lengths, strict truncation errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgated.piv.errors import PivParseError
from hwgated.piv.tlv import Tlv, TlvError, encode_length, iter_tlvs, read_header


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (0x7F, "7f"),
        (0x80, "8180"),
        (0xFF, "81ff"),
        (0x100, "820100"),
        (0xFFFF, "82ffff"),
        (0x10000, "83010000"),
    ],
)
def test_encode_length(length: int, encoded: str) -> None:
    assert encode_length(length) == bytes.fromhex(encoded)


def test_multi_byte_tags() -> None:
    tlv = Tlv(0x5FC105, b"\x01\x02")
    assert bytes(tlv) == bytes.fromhex("5fc105020102")
    assert (tlv.tag, tlv.value, tlv.length) == (0x5FC105, b"\x01\x02", 2)
    assert Tlv(0x7F61).startswith(b"\x7f\x61\x00")


@pytest.mark.parametrize("size", [0x80, 0xFF, 0x100, 3000])
def test_long_lengths_round_trip(size: int) -> None:
    tlv = Tlv(0x53, b"\xab" * size)
    again = Tlv(bytes(tlv))
    assert (again.tag, again.value) == (0x53, b"\xab" * size)


def test_nested_template() -> None:
    template = Tlv(0x7C, Tlv(0x82) + Tlv(0x81, b"\x00" * 32))
    assert template[:4] == bytes.fromhex("7c248200")
    inner = Tlv.parse_dict(Tlv.unpack(0x7C, template))
    assert inner == {0x82: b"", 0x81: b"\x00" * 32}


@pytest.mark.parametrize(
    "hexstr",
    [
        "",  # missing tag
        "5f",  # truncated multi-byte tag
        "5fc1",  # truncated 3-byte tag
        "5fc1c10100",  # 4-byte tag
        "53",  # missing length
        "5381",  # truncated 81 length
        "538201",  # truncated 82 length
        "530201",  # value overruns
        "5380",  # indefinite length
        "5384000000010000",  # 4-byte length form
        "53820100" + "00" * 255,  # one short
    ],
)
def test_malformed_refused(hexstr: str) -> None:
    with pytest.raises(TlvError):
        Tlv.parse_list(bytes.fromhex(hexstr)) if hexstr else Tlv(b"")


def test_trailing_bytes_refused() -> None:
    with pytest.raises(TlvError, match="trailing"):
        Tlv(bytes.fromhex("530100ff"))


def test_unpack_wrong_tag() -> None:
    with pytest.raises(TlvError, match="expected tag"):
        Tlv.unpack(0x53, bytes(Tlv(0x54, b"x")))


def test_invalid_int_tags_refused() -> None:
    for tag in (-1, 0x1F, 0x5F01FF, 0x5FC1C101):
        with pytest.raises(TlvError):
            Tlv(tag)


def test_parse_dict_keeps_first() -> None:
    assert Tlv.parse_dict(bytes(Tlv(0x80, b"a") + Tlv(0x80, b"b"))) == {0x80: b"a"}


def test_read_header_offsets() -> None:
    data = bytes.fromhex("0000") + bytes(Tlv(0x5FC102, b"xyz"))
    assert read_header(data, 2) == (0x5FC102, 6, 9)


def test_error_is_parse_error() -> None:
    assert issubclass(TlvError, PivParseError)
    assert issubclass(TlvError, ValueError)


tags = st.sampled_from([0x01, 0x53, 0x7C, 0x82, 0x5F2F, 0x7F61, 0x5FC105, 0x5FC122])


@settings(max_examples=300)
@given(st.lists(st.tuples(tags, st.binary(max_size=300)), max_size=5))
def test_round_trip(items: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(Tlv(tag, value) for tag, value in items)
    assert [(t.tag, t.value) for t in iter_tlvs(encoded)] == items


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_tlv_error(data: bytes) -> None:
    try:
        tlvs = Tlv.parse_list(data)
    except TlvError:
        return
    assert b"".join(tlvs) == data
