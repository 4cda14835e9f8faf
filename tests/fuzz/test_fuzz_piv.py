"""Every PIV parser that reads bytes a client or a card chose: only its own error may escape.

A client controls Transmit's APDUs (CommandApdu.decode); a card — genuine,
broken or hostile — controls every response and data object. Any exception
other than the parser's declared one (PivParseError, or a PivError for a status
word) would become an INTERNAL error, or worse, kill a reader worker.
"""

from __future__ import annotations

import contextlib
import gzip
import struct
from collections.abc import Callable, Iterator

import pytest
from fuzz_support import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from hwgated.piv import certinfo, objects, tlv
from hwgated.piv.apdu import (
    MAX_RESPONSE_ROUNDS,
    ApduError,
    CommandApdu,
    ResponseApdu,
    transceive,
)
from hwgated.piv.errors import PivError, PivParseError
from hwgated.piv.fascn import Fascn
from hwgated.piv.session import PivCard
from hwgated.piv.slots import Slot

pytestmark = pytest.mark.fuzz
EXPECTED = (PivParseError, PivError)


def tlv_bytes() -> st.SearchStrategy[bytes]:
    """Byte strings that are often nearly valid BER-TLV (so parsers get past the first byte)."""
    tags = st.sampled_from(
        [0x53, 0x70, 0x71, 0xFE, 0x30, 0x34, 0x35, 0x3E, 0x7E, 0x4F, 0x5F2F, 0x61]
    )
    leaf = st.builds(lambda t, v: bytes(tlv.Tlv(t, v)), tags, st.binary(max_size=40))
    raw_header = st.binary(min_size=1, max_size=6)
    nested = st.recursive(
        leaf,
        lambda inner: st.builds(
            lambda t, parts: bytes(tlv.Tlv(t, b"".join(parts))), tags, st.lists(inner, max_size=4)
        ),
        max_leaves=8,
    )
    return st.one_of(
        st.binary(max_size=300),
        nested,
        st.builds(lambda h, body: h + body, raw_header, st.binary(max_size=64)),
        st.builds(lambda a, b: a[: len(a) // 2] + b, nested, st.binary(max_size=8)),  # truncated
    )


@fuzz_settings(3)
@given(st.binary(max_size=300))
def test_command_apdu_decode(data: bytes) -> None:
    try:
        apdu = CommandApdu.decode(data)
    except ApduError:
        return
    assert apdu.encode() == data  # a valid APDU round-trips exactly


@fuzz_settings(1)
@given(st.binary(max_size=300))
def test_response_apdu_parse(data: bytes) -> None:
    try:
        resp = ResponseApdu.parse(data)
    except PivParseError:
        assert len(data) < 2
        return
    assert resp.encode() == data


class HostileCard:
    """A scripted card answering each command with the next canned response (then 6A82)."""

    def __init__(self, answers: list[bytes]) -> None:
        self._answers: Iterator[bytes] = iter(answers)
        self.calls = 0

    def __call__(self, command: bytes) -> bytes:
        self.calls += 1
        CommandApdu.decode(command)  # everything we send must itself be a valid APDU
        return next(self._answers, b"\x6a\x82")


def answers() -> st.SearchStrategy[list[bytes]]:
    sw = st.one_of(
        st.sampled_from([b"\x90\x00", b"\x61\x00", b"\x61\x10", b"\x6c\x05", b"\x6c\x00"]),
        st.binary(min_size=2, max_size=2),
    )
    answer = st.one_of(
        st.binary(max_size=3),
        st.builds(lambda d, s: d + s, tlv_bytes(), sw),
        st.builds(lambda n, s: bytes(n) + s, st.integers(0, 300), sw),
    )
    return st.lists(answer, max_size=MAX_RESPONSE_ROUNDS + 8)


@fuzz_settings(2)
@given(answers(), st.binary(max_size=600), st.one_of(st.none(), st.integers(1, 65536)))
def test_transceive_with_a_hostile_card(script: list[bytes], data: bytes, le: int | None) -> None:
    card = HostileCard(script)
    try:
        resp = transceive(card, CommandApdu(0x00, 0xCB, 0x3F, 0xFF, data, le))
    except PivParseError:
        pass
    else:
        assert 0 <= resp.sw <= 0xFFFF
    assert card.calls <= MAX_RESPONSE_ROUNDS + len(data) // 255 + 2  # bounded, never a hang


CARD_READS: list[Callable[[PivCard], object]] = [
    PivCard.select,
    PivCard.read_chuid,
    PivCard.read_discovery,
    PivCard.pin_retries,
    lambda card: card.read_certificate(Slot.AUTHENTICATION),
]


@fuzz_settings(2)
@given(answers(), st.sampled_from(range(len(CARD_READS))))
def test_piv_card_reads_with_a_hostile_card(script: list[bytes], which: int) -> None:
    with contextlib.suppress(*EXPECTED):
        CARD_READS[which](PivCard(HostileCard(script)))


@fuzz_settings(2)
@given(tlv_bytes())
def test_ber_tlv(data: bytes) -> None:
    for parse in (tlv.Tlv.parse_list, tlv.Tlv.parse_dict, lambda d: list(tlv.iter_tlvs(d))):
        with contextlib.suppress(PivParseError):
            parse(data)
    try:
        _tag, offset, length = tlv.read_header(data)
    except PivParseError:
        return
    assert 0 < offset <= len(data) and length >= 0


@fuzz_settings(1)
@given(st.one_of(st.binary(max_size=40), st.binary(min_size=25, max_size=25)))
def test_fascn_decode(data: bytes) -> None:
    try:
        fascn = Fascn.decode(data)
    except PivParseError:
        return
    assert Fascn.decode(fascn.encode()) == fascn
    str(fascn)


PARSERS: list[Callable[[bytes], object]] = [
    objects.Chuid.parse,
    objects.CertificateContainer.parse,
    objects.parse_certificate_object,
    objects.Discovery.parse,
    objects.ApplicationPropertyTemplate.parse,
]


@fuzz_settings(3)
@given(tlv_bytes(), st.sampled_from(range(len(PARSERS))))
def test_piv_objects(data: bytes, which: int) -> None:
    with contextlib.suppress(PivParseError):
        PARSERS[which](data)


def gzip_blob() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.builds(gzip.compress, st.binary(max_size=200)),
        st.builds(lambda b, n: gzip.compress(b)[:n], st.binary(max_size=200), st.integers(0, 40)),
        st.builds(lambda n: gzip.compress(bytes(n)), st.integers(0, 200_000)),  # inflation bombs
    )


@fuzz_settings(1)
@given(gzip_blob(), st.sampled_from([b"\x01", b"\x00", b"\x04", b"\xff"]))
def test_compressed_certificate_container(blob: bytes, info: bytes) -> None:
    body = tlv.Tlv(0x70, blob) + tlv.Tlv(0x71, info) + tlv.Tlv(0xFE)
    try:
        cert = objects.parse_certificate_object(bytes(tlv.Tlv(0x53, body)))
    except PivParseError:
        return
    assert len(cert) <= objects.MAX_CERTIFICATE_SIZE


def der_like() -> st.SearchStrategy[bytes]:
    """Random bytes and mangled DER SEQUENCE headers (what a card's cert slot may hold)."""
    seq = st.builds(
        lambda n, body: b"\x30\x82" + struct.pack(">H", n) + body,
        st.integers(0, 0xFFFF),
        st.binary(max_size=200),
    )
    return st.one_of(st.binary(max_size=300), seq)


@fuzz_settings(1)
@given(der_like())
def test_certinfo_summarize(data: bytes) -> None:
    with contextlib.suppress(PivParseError):
        certinfo.summarize(data)
