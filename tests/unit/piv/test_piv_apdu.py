"""APDU encoding (all ISO cases, short + extended) and the transceive rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from piv_fakes import ScriptedCard

from hwgated.piv.apdu import (
    MAX_RESPONSE_ROUNDS,
    ApduError,
    CommandApdu,
    ResponseApdu,
    split_for_chaining,
    transceive,
)
from hwgated.piv.errors import PivParseError

CASES = [
    # (apdu, hex)
    (CommandApdu(0x00, 0xA4, 0x04, 0x00), "00a40400"),  # case 1
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=256), "00cb3fff00"),  # 2S, Le=00
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=0x10), "00cb3fff10"),
    (CommandApdu(0x00, 0x20, 0x00, 0x80, b"\x31\x32"), "00200080023132"),  # 3S
    (CommandApdu(0x00, 0x87, 0x07, 0x9A, b"\xaa", le=256), "008707 9a01aa00"),  # 4S
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=65536), "00cb3fff000000"),  # 2E, Le=0000
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=257), "00cb3fff000101"),
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=5, extended=True), "00cb3fff000005"),
    (CommandApdu(0x00, 0xDB, 0x3F, 0xFF, b"\x01" * 256), "00db3fff000100" + "01" * 256),  # 3E
    (
        CommandApdu(0x00, 0x87, 0x07, 0x9A, b"\x02" * 300, le=65536),
        "0087079a00012c" + "02" * 300 + "0000",
    ),  # 4E
    (CommandApdu(0x00, 0x87, 0x07, 0x9A, b"\x02", le=300), "0087079a000001" + "02" + "012c"),
]


@pytest.mark.parametrize(("cmd", "hexstr"), CASES)
def test_encode_cases(cmd: CommandApdu, hexstr: str) -> None:
    assert cmd.encode() == bytes.fromhex(hexstr)


@pytest.mark.parametrize(("cmd", "hexstr"), CASES)
def test_decode_cases(cmd: CommandApdu, hexstr: str) -> None:
    decoded = CommandApdu.decode(bytes.fromhex(hexstr))
    assert decoded.encode() == bytes.fromhex(hexstr)
    assert (decoded.data, decoded.le) == (cmd.data, cmd.le)


@pytest.mark.parametrize(
    "hexstr",
    [
        "",
        "00a404",  # short header
        "00a4040002aa",  # Lc 2, one byte
        "00a4040001aabbcc",  # Lc 1, three bytes
        "00a404000000",  # 00 00: truncated extended
        "00a4040000000000",  # extended Lc 0 with more bytes
        "00a40400000002aa",  # extended Lc 2, one byte
        "00a40400000001aa00",  # extended case 4 with 1-byte Le
    ],
)
def test_decode_refuses_inconsistent_lengths(hexstr: str) -> None:
    with pytest.raises(ApduError):
        CommandApdu.decode(bytes.fromhex(hexstr))


def test_constructor_validates_ranges() -> None:
    with pytest.raises(ApduError):
        CommandApdu(0x100, 0, 0, 0)
    with pytest.raises(ApduError):
        CommandApdu(0, 0, 0, 0, le=0)
    with pytest.raises(ApduError):
        CommandApdu(0, 0, 0, 0, le=65537)
    with pytest.raises(ApduError):
        CommandApdu(0, 0, 0, 0, b"\x00" * 65536)


def test_wipe_zeroes_bytearray_data() -> None:
    secret = bytearray(b"123456\xff\xff")
    cmd = CommandApdu(0, 0x20, 0, 0x80, secret)
    cmd.wipe()
    assert secret == bytearray(8)


def test_response_parse() -> None:
    resp = ResponseApdu.parse(bytes.fromhex("aabb63c2"))
    assert (resp.data, resp.sw, resp.sw1, resp.sw2) == (b"\xaa\xbb", 0x63C2, 0x63, 0xC2)
    assert resp.encode() == bytes.fromhex("aabb63c2")
    with pytest.raises(ApduError):
        ResponseApdu.parse(b"\x90")


def test_split_for_chaining() -> None:
    cmd = CommandApdu(0x00, 0xDB, 0x3F, 0xFF, bytes(range(256)) * 2 + b"x", le=256)
    pieces = split_for_chaining(cmd)
    assert [len(p.data) for p in pieces] == [255, 255, 3]
    assert [p.cla for p in pieces] == [0x10, 0x10, 0x00]
    assert [p.le for p in pieces] == [None, None, 256]
    assert b"".join(p.data for p in pieces) == cmd.data
    assert split_for_chaining(CommandApdu(0, 0xCB, 0, 0, b"ab")) == [
        CommandApdu(0, 0xCB, 0, 0, b"ab")
    ]


def test_split_exact_multiple() -> None:
    pieces = split_for_chaining(CommandApdu(0, 1, 0, 0, b"\x01" * 510), max_data=255)
    assert [(p.cla, len(p.data)) for p in pieces] == [(0x10, 255), (0x00, 255)]


def test_transceive_chaining_and_get_response() -> None:
    data = b"\x11" * 300
    card = ScriptedCard(
        [
            ("1087079a ff" + "11" * 255, "9000"),
            ("0087079a 2d" + "11" * 45 + "00", "aaaa6103"),
            ("00c0000003", "bbbbbb6100"),
            ("00c0000000", "cc9000"),
        ]
    )
    resp = transceive(card, CommandApdu(0x00, 0x87, 0x07, 0x9A, data, le=256))
    assert resp == ResponseApdu(bytes.fromhex("aaaabbbbbbcc"), 0x9000)
    assert card.done()


def test_transceive_chain_interrupted() -> None:
    card = ScriptedCard([("1087079a ff" + "11" * 255, "6982")])
    resp = transceive(card, CommandApdu(0x00, 0x87, 0x07, 0x9A, b"\x11" * 300, le=256))
    assert resp.sw == 0x6982
    assert card.done()


def test_transceive_wrong_le() -> None:
    card = ScriptedCard([("00cb3fff00", "6c10"), ("00cb3fff10", "01" * 16 + "9000")])
    resp = transceive(card, CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=256))
    assert resp == ResponseApdu(b"\x01" * 16, 0x9000)


def test_transceive_large_le_goes_short() -> None:
    card = ScriptedCard([("00cb3fff00", "6a82")])
    assert transceive(card, CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=4096)).sw == 0x6A82


def test_transceive_explicit_extended_not_chained() -> None:
    cmd = CommandApdu(0x00, 0xDB, 0x3F, 0xFF, b"\x01" * 300, extended=True)
    card = ScriptedCard([(cmd.encode().hex(), "9000")])
    assert transceive(card, cmd).sw == 0x9000


def test_transceive_bounded_get_response() -> None:
    calls = 0

    def endless(apdu: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return b"\x00" * 4 + b"\x61\x04"

    with pytest.raises(ApduError, match="rounds"):
        transceive(endless, CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=256))
    assert calls == MAX_RESPONSE_ROUNDS


def test_transceive_bounded_wrong_le_loop() -> None:
    with pytest.raises(ApduError):
        transceive(lambda _: b"\x6c\x10", CommandApdu(0x00, 0xCB, 0x3F, 0xFF, le=256))


def test_transceive_bounded_bytes() -> None:
    with pytest.raises(ApduError, match="longer"):
        transceive(lambda _: b"\x00" * 5000 + b"\x61\x00", CommandApdu(0, 0xCB, 0x3F, 0xFF))


def test_transceive_no_status_word() -> None:
    with pytest.raises(ApduError):
        transceive(lambda _: b"\x90", CommandApdu(0, 0xCB, 0x3F, 0xFF))


apdus = st.builds(
    CommandApdu,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=600),
    st.one_of(st.none(), st.integers(1, 65536)),
    st.booleans(),
)


@settings(max_examples=300)
@given(apdus)
def test_round_trip(cmd: CommandApdu) -> None:
    decoded = CommandApdu.decode(cmd.encode())
    assert (decoded.cla, decoded.ins, decoded.p1, decoded.p2) == (cmd.cla, cmd.ins, cmd.p1, cmd.p2)
    assert (decoded.data, decoded.le, decoded.is_extended) == (cmd.data, cmd.le, cmd.is_extended)
    assert decoded.encode() == cmd.encode()


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decode_arbitrary_bytes(raw: bytes) -> None:
    try:
        cmd = CommandApdu.decode(raw)
    except PivParseError:
        return
    assert cmd.encode() == raw
