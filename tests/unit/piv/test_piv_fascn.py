"""FASC-N encoding against the published samples (PIV-REFERENCE.md §6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgated.piv.errors import PivParseError
from hwgated.piv.fascn import Fascn, FascnError

TIG = Fascn("0032", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2")
TIG_BYTES = bytes.fromhex(
    "D0 43 94 58 21 0C 2C 19 A0 84 6D 83 68 5A 10 82 10 8C E7 39 84 10 8C A3 FC"
)
NON_FED = Fascn("9999", "9999", "999999", "0", "1", "0000000000", "3", "0000", "1")
NON_FED_BYTES = bytes.fromhex(
    "D4 E7 39 DA 73 9C ED 39 CE 73 9D 83 68 58 21 08 42 10 84 21 C8 42 10 C3 EB"
)


@pytest.mark.parametrize(("fascn", "data"), [(TIG, TIG_BYTES), (NON_FED, NON_FED_BYTES)])
def test_samples_encode(fascn: Fascn, data: bytes) -> None:
    assert fascn.encode() == data


@pytest.mark.parametrize(("fascn", "data"), [(TIG, TIG_BYTES), (NON_FED, NON_FED_BYTES)])
def test_samples_decode(fascn: Fascn, data: bytes) -> None:
    assert Fascn.decode(data) == fascn


def test_str_is_dashed_form() -> None:
    assert str(TIG) == "0032-0001-092446-0-1-1112223333-1-1223-2"


def test_single_bit_flip_is_refused_everywhere() -> None:
    for bit in range(200):
        corrupted = bytearray(TIG_BYTES)
        corrupted[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(FascnError):
            Fascn.decode(bytes(corrupted))


def test_wrong_length_refused() -> None:
    with pytest.raises(FascnError, match="25 bytes"):
        Fascn.decode(TIG_BYTES[:-1])


def test_lrc_mismatch_refused() -> None:
    # Replace the last character (LRC) by another correctly-parity'd value.
    packed = int.from_bytes(TIG_BYTES, "big")
    bad = (packed & ~0x1F) | 0b10000  # value 1, parity 0 -> total ones = 1 (odd): valid code
    with pytest.raises(FascnError, match="LRC"):
        Fascn.decode(bad.to_bytes(25, "big"))


def test_field_validation() -> None:
    with pytest.raises(FascnError):
        Fascn("003", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2")
    with pytest.raises(FascnError):
        Fascn("00a2", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2")
    assert issubclass(FascnError, ValueError)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


fascns = st.builds(
    Fascn,
    _digits(4),
    _digits(4),
    _digits(6),
    _digits(1),
    _digits(1),
    _digits(10),
    _digits(1),
    _digits(4),
    _digits(1),
)


@settings(max_examples=300)
@given(fascns)
def test_round_trip(fascn: Fascn) -> None:
    assert Fascn.decode(fascn.encode()) == fascn


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=30))
def test_decode_arbitrary_bytes_only_raises_parse_error(data: bytes) -> None:
    try:
        result = Fascn.decode(data)
    except PivParseError:
        return
    assert result.encode() == data
