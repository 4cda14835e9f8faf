"""The virtual card's own BER-TLV codec (vcard/ber.py) against hand-written vectors.

The vectors are written out byte by byte from ISO/IEC 7816-4 §5.2 and SP 800-73-4
part 2 (tag bytes, short form below 0x80, then 81 xx, 82 xx xx), not produced by
any encoder, so they also pin the daemon-independent codec to the spec.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgate_testbed.vcard import ber


@pytest.mark.parametrize(
    ("tag", "value", "encoded"),
    [
        (0xFE, b"", "FE00"),
        (0x53, b"", "5300"),
        (0x71, b"\x01", "710101"),
        (0x5C, bytes.fromhex("5FC102"), "5C035FC102"),
        (0x7F61, b"\xaa", "7F6101AA"),
        (0x5FC102, b"\x01\x02", "5FC102020102"),
        (0x5F2F, bytes.fromhex("4010"), "5F2F024010"),
        (0x70, b"\x00" * 0x7F, "707F" + "00" * 0x7F),
        (0x70, b"\x00" * 0x80, "708180" + "00" * 0x80),
        (0x70, b"\x00" * 0xFF, "7081FF" + "00" * 0xFF),
        (0x70, b"\x00" * 0x100, "70820100" + "00" * 0x100),
        (0x53, b"\x11" * 0x4E2, "538204E2" + "11" * 0x4E2),
    ],
)
def test_encode_and_decode_vectors(tag: int, value: bytes, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert ber.tlv(tag, value) == raw
    assert ber.read_tlv(raw) == (tag, value, len(raw))
    assert ber.unwrap(tag, raw) == value


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, "00"), (0x7F, "7F"), (0x80, "8180"), (0xFF, "81FF"), (0x100, "820100"),
     (0xFFFF, "82FFFF"), (0x10000, "83010000")],
)  # fmt: skip
def test_length_field_is_shortest_form(length: int, encoded: str) -> None:
    assert ber.length_bytes(length) == bytes.fromhex(encoded)


@pytest.mark.parametrize(
    ("raw", "length"),
    [("5381050102030405", 5), ("538200030A0B0C", 3), ("53830000020A0B", 2)],
)
def test_non_minimal_long_lengths_are_read(raw: str, length: int) -> None:
    """BER lets a sender use a longer length field than needed; the card reads it."""
    tag, value, end = ber.read_tlv(bytes.fromhex(raw))
    assert (tag, len(value), end) == (0x53, length, len(bytes.fromhex(raw)))


def test_minimal_apt_vector() -> None:
    """SP 800-73-4 minimal APT: 61 16 4F 0B <AID> 79 07 4F 05 <RID>."""
    aid = bytes.fromhex("A0000003080000100001 00".replace(" ", ""))
    built = ber.tlv(0x61, ber.tlv(0x4F, aid) + ber.tlv(0x79, ber.tlv(0x4F, aid[:5])))
    assert built == bytes.fromhex(
        "61164F0BA0000003080000100001007907 4F05A000000308".replace(" ", "")
    )


def test_decode_template_keeps_first_of_repeated_tag() -> None:
    data = bytes.fromhex("8200 8103010203 8101FF")
    assert ber.decode_all(data) == [(0x82, b""), (0x81, b"\x01\x02\x03"), (0x81, b"\xff")]
    assert ber.decode_template(data) == {0x82: b"", 0x81: b"\x01\x02\x03"}


@pytest.mark.parametrize(
    "raw",
    [
        "",  # no tag
        "5F",  # multi-byte tag cut short
        "5FC1",  # ... after its second byte
        "5FC1C10100",  # four tag bytes
        "53",  # no length
        "5380",  # indefinite length
        "538400000001AA",  # four length bytes
        "5381",  # long length cut short
        "538201",
        "530200",  # value overruns the data
        "5381FF00",
    ],
)
def test_malformed_input_raises_ber_error(raw: str) -> None:
    with pytest.raises(ber.BerError):
        ber.read_tlv(bytes.fromhex(raw))
    if raw:  # an empty concatenation is fine; a broken one is not
        with pytest.raises(ber.BerError):
            ber.decode_all(bytes.fromhex("FE00" + raw))


def test_unwrap_checks_tag_and_trailing_bytes() -> None:
    with pytest.raises(ber.BerError, match="expected tag"):
        ber.unwrap(0x5C, bytes.fromhex("7C00"))
    with pytest.raises(ber.BerError, match="bytes after"):
        ber.unwrap(0x5C, bytes.fromhex("5C017E00"))
    assert issubclass(ber.BerError, ValueError)


@pytest.mark.parametrize(
    "tag", [-1, 0x1F, 0x9F, 0x5F, 0x5F81, 0x0102, 0x5F0101, 0x5F8181, 0x1000000]
)
def test_invalid_tags_are_refused(tag: int) -> None:
    with pytest.raises(ber.BerError):
        ber.tlv(tag)


# -- hypothesis round trips ---------------------------------------------------------

_class = st.integers(0, 7)  # class and constructed bits: b8-b6 of the first byte
_single = st.builds(lambda hi, lo: hi << 5 | lo, _class, st.integers(0, 0x1E))
_first = _class.map(lambda hi: hi << 5 | 0x1F)  # "more tag bytes follow"
_double = st.builds(lambda first, last: first << 8 | last, _first, st.integers(0, 0x7F))
_triple = st.builds(
    lambda first, mid, last: first << 16 | mid << 8 | last,
    _first,
    st.integers(0x80, 0xFF),
    st.integers(0, 0x7F),
)
tags = st.one_of(_single, _double, _triple)
values = st.one_of(
    st.binary(max_size=300),
    st.integers(0, 70_000).map(lambda n: bytes([n % 251]) * n),  # 81/82/83 lengths
)


@settings(max_examples=200)
@given(tags, values)
def test_round_trip_one(tag: int, value: bytes) -> None:
    raw = ber.tlv(tag, value)
    assert ber.read_tlv(raw) == (tag, value, len(raw))
    assert ber.unwrap(tag, raw) == value


@settings(max_examples=150)
@given(st.lists(st.tuples(tags, st.binary(max_size=200)), max_size=8))
def test_round_trip_concatenation(items: list[tuple[int, bytes]]) -> None:
    raw = b"".join(ber.tlv(tag, value) for tag, value in items)
    assert ber.decode_all(raw) == items


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_ber_error(raw: bytes) -> None:
    """Only BerError escapes; what decodes re-encodes to something that decodes the same."""
    try:
        items = ber.decode_all(raw)
    except ber.BerError:
        return
    again = b"".join(ber.tlv(tag, value) for tag, value in items)
    assert ber.decode_all(again) == items
    assert len(again) <= len(raw)  # shortest form never grows the encoding
