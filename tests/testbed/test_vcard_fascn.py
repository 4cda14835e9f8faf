"""The virtual card's own FASC-N encoder (vcard/fascn.py) against the TIG SCEPACS rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgate_testbed.vcard.fascn import Fascn, FascnError, character_bits

# TIG SCEPACS example credential 0032-0001-092446-0-1-1112223333-1-1223-2 and the
# non-federal 9999 FASC-N hosts write (PIV-REFERENCE.md §6); bytes written out by hand.
TIG = Fascn("0032", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2")
TIG_BYTES = bytes.fromhex("D0439458210C2C19A0846D83685A1082108CE73984108CA3FC")
NON_FED = Fascn("9999", "9999", "999999", "0", "1", "0000000000", "3", "0000", "1")
NON_FED_BYTES = bytes.fromhex(
    "D4E739DA739CED39CE739D8368582108421084 21C84210C3EB".replace(" ", "")
)


@pytest.mark.parametrize(
    ("code", "bits"),
    [
        (0x0, "00001"),  # digit 0: no data bits set, parity 1
        (0x1, "10000"),  # LSB first
        (0x2, "01000"),
        (0x3, "11001"),
        (0x9, "10011"),
        (0xB, "11010"),  # start sentinel
        (0xD, "10110"),  # field separator
        (0xF, "11111"),  # end sentinel
    ],
)
def test_character_bits(code: int, bits: str) -> None:
    assert character_bits(code) == bits
    assert bits.count("1") % 2 == 1


@pytest.mark.parametrize(("fascn", "data"), [(TIG, TIG_BYTES), (NON_FED, NON_FED_BYTES)])
def test_reference_vectors(fascn: Fascn, data: bytes) -> None:
    assert fascn.encode() == data
    assert Fascn.decode(data) == fascn


def test_layout_of_the_tig_example() -> None:
    codes = TIG.codes()
    assert len(codes) == 40
    assert codes[0] == 0xB and codes[38] == 0xF
    assert [i for i, c in enumerate(codes) if c == 0xD] == [5, 10, 17, 19, 21]
    lrc = 0
    for code in codes[:39]:
        lrc ^= code
    assert codes[39] == lrc


@pytest.mark.parametrize("bit", [0, 7, 99, 199])
def test_any_flipped_bit_is_refused(bit: int) -> None:
    corrupted = int.from_bytes(TIG_BYTES, "big") ^ (1 << (199 - bit))
    with pytest.raises(FascnError):
        Fascn.decode(corrupted.to_bytes(25, "big"))


def test_bad_lrc_and_bad_length_are_refused() -> None:
    # Replace the LRC character (last 5 bits) with a different well-formed one.
    wrong_lrc = (int.from_bytes(TIG_BYTES, "big") & ~0x1F) | int(character_bits(0x0), 2)
    assert TIG_BYTES[-1] & 0x1F != int(character_bits(0x0), 2)
    with pytest.raises(FascnError, match="LRC"):
        Fascn.decode(wrong_lrc.to_bytes(25, "big"))
    with pytest.raises(FascnError, match="25 bytes"):
        Fascn.decode(TIG_BYTES[:-1])


@pytest.mark.parametrize(
    "fields",
    [
        ("003", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2"),
        ("00a2", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2"),
        ("\uff10\uff10\uff13\uff12", "0001", "092446", "0", "1", "1112223333", "1", "1223", "2"),
    ],
)
def test_fields_must_be_ascii_digits_of_the_right_width(fields: tuple[str, ...]) -> None:
    with pytest.raises(FascnError):
        Fascn(*fields)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


fascns = st.builds(
    Fascn, _digits(4), _digits(4), _digits(6), _digits(1), _digits(1), _digits(10),
    _digits(1), _digits(4), _digits(1),
)  # fmt: skip


@settings(max_examples=300)
@given(fascns)
def test_round_trip(fascn: Fascn) -> None:
    data = fascn.encode()
    assert len(data) == 25
    assert Fascn.decode(data) == fascn
