"""PIV data objects: CHUID, certificate containers, Discovery, APT, slots."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import uuid
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgated.piv.errors import PivParseError
from hwgated.piv.fascn import Fascn, FascnError
from hwgated.piv.objects import (
    MAX_CERTIFICATE_SIZE,
    Algorithm,
    ApplicationPropertyTemplate,
    CertificateContainer,
    Chuid,
    Discovery,
    ObjectError,
    PinPolicy,
    PinUsage,
    Slot,
    build_certificate_object,
    parse_certificate_object,
)
from hwgated.piv.tlv import Tlv

FASCN = Fascn("9999", "9999", "999999", "0", "1", "0000000000", "3", "0000", "1")
GUID = uuid.UUID("3b5c0d3e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")
FAKE_DER = b"\x30\x82\x01\x00" + bytes(range(256))


def test_chuid_built_then_parsed() -> None:
    chuid = Chuid(FASCN, GUID, datetime.date(2030, 1, 1), signature=b"\x30\x03\x02\x01\x00")
    data = chuid.encode()
    assert data[:1] == b"\x53"
    parsed = Chuid.parse(data)
    assert parsed == chuid
    assert parsed.has_signature
    assert parsed.raw == data


def test_chuid_yubikey_style_sample() -> None:
    # 30 19 <non-fed FASC-N> 34 10 <uuid> 35 08 "20300101" 3E 00 FE 00 (PIV-REFERENCE §5)
    body = (
        Tlv(0x30, FASCN.encode())
        + Tlv(0x34, GUID.bytes)
        + Tlv(0x35, b"20300101")
        + Tlv(0x3E)
        + Tlv(0xFE)
    )
    chuid = Chuid.parse(bytes(Tlv(0x53, body)))
    assert chuid.fascn == FASCN
    assert chuid.guid == GUID
    assert chuid.expiry == datetime.date(2030, 1, 1)
    assert not chuid.has_signature
    assert chuid.org_id is None


def test_chuid_optional_fields() -> None:
    chuid = Chuid(
        None,
        GUID,
        None,
        org_id=b"\x00\x01\x02\x03",
        duns=b"123456789",
        cardholder_uuid=uuid.UUID(int=7),
    )
    assert Chuid.parse(chuid.encode()) == chuid


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (Tlv(0x34, b"\x00" * 15), "guid"),  # short GUID
        (Tlv(0x35, b"2030011"), "expiry"),  # short expiry
        (Tlv(0x35, b"20301301"), "expiry"),  # month 13
        (Tlv(0x35, b"2030x101"), "expiry"),
        (Tlv(0x30, b"\x00" * 25), "fascn"),  # parity errors
        (Tlv(0x30, b"\x00" * 24), "fascn"),
        (Tlv(0x32, b"\x00" * 3), "org_id"),
        (Tlv(0x36, b"\x00" * 17), "cardholder_uuid"),
    ],
)
def test_chuid_bad_field_is_named_and_the_rest_kept(body: bytes, name: str) -> None:
    """A malformed field no longer drops the CHUID: it is None, named with a
    reason, and the good fields beside it survive."""
    other = Tlv(0x34, GUID.bytes) if name != "guid" else Tlv(0x35, b"20300101")
    data = bytes(Tlv(0x53, body + other + Tlv(0x3E, b"\x30\x00") + Tlv(0xFE)))
    chuid = Chuid.parse(data)
    assert getattr(chuid, name) is None
    assert [field for field, _ in chuid.unparsed] == [name]
    assert chuid.unparsed[0][1]
    if name == "guid":
        assert chuid.expiry == datetime.date(2030, 1, 1)
    else:
        assert chuid.guid == GUID
    assert chuid.has_signature and chuid.raw == data


def test_fascn_placeholder_is_still_refused_by_the_strict_decoder() -> None:
    with pytest.raises(FascnError):
        Fascn.decode(b"\x00" * 25)


def test_chuid_placeholder_fascn_keeps_guid_expiry_and_signature() -> None:
    """The 25-zero-byte FASC-N some cards ship: everything else is still read."""
    signed = Chuid(FASCN, GUID, datetime.date(2030, 1, 1), signature=b"\x30\x03\x02\x01\x00")
    placeholder = signed.encode().replace(FASCN.encode(), b"\x00" * 25)
    chuid = Chuid.parse(placeholder)
    assert chuid.fascn is None
    assert (chuid.guid, chuid.expiry) == (GUID, datetime.date(2030, 1, 1))
    assert chuid.signature == signed.signature and chuid.raw == placeholder
    assert chuid.unparsed == (("fascn", "parity error in character 0b00000"),)


def test_chuid_wrong_outer_tag() -> None:
    with pytest.raises(ObjectError):
        Chuid.parse(bytes(Tlv(0x54, Tlv(0x34, GUID.bytes))))


def test_certificate_plain() -> None:
    obj = bytes(Tlv(0x53, Tlv(0x70, FAKE_DER) + Tlv(0x71, b"\x00") + Tlv(0xFE)))
    assert parse_certificate_object(obj) == FAKE_DER
    assert build_certificate_object(FAKE_DER) == obj


def test_certificate_gzip() -> None:
    obj = bytes(Tlv(0x53, Tlv(0x70, gzip.compress(FAKE_DER)) + Tlv(0x71, b"\x01") + Tlv(0xFE)))
    container = CertificateContainer.parse(obj)
    assert container.certificate == FAKE_DER
    assert container.compressed
    assert parse_certificate_object(build_certificate_object(FAKE_DER, compress=True)) == FAKE_DER


def test_certificate_gzip_bomb_refused() -> None:
    bomb = gzip.compress(b"\x00" * (MAX_CERTIFICATE_SIZE + 1))
    obj = bytes(Tlv(0x53, Tlv(0x70, bomb) + Tlv(0x71, b"\x01")))
    with pytest.raises(ObjectError, match="inflates"):
        parse_certificate_object(obj)


@pytest.mark.parametrize(
    "inner",
    [
        Tlv(0x71, b"\x00"),  # no certificate
        Tlv(0x70) + Tlv(0x71, b"\x00"),  # empty certificate
        Tlv(0x70, b"not gzip") + Tlv(0x71, b"\x01"),
        Tlv(0x70, gzip.compress(FAKE_DER)[:-12]) + Tlv(0x71, b"\x01"),  # truncated gzip
    ],
)
def test_certificate_bad(inner: bytes) -> None:
    with pytest.raises(ObjectError):
        parse_certificate_object(bytes(Tlv(0x53, inner)))


def test_discovery_reference_sample() -> None:
    aid = bytes.fromhex("A000000308000010000100")
    data = bytes(Tlv(0x7E, Tlv(0x4F, aid) + Tlv(0x5F2F, b"\x40\x00")))
    disc = Discovery.parse(data)
    assert disc == Discovery(aid, PinUsage.APPLICATION_PIN, False)
    assert disc.encode() == data
    assert Discovery.parse(bytes(Tlv(0x53, data))) == disc  # tolerated 53 wrapper


def test_discovery_global_pin_primary() -> None:
    aid = bytes.fromhex("A000000308000010000100")
    data = bytes(Tlv(0x7E, Tlv(0x4F, aid) + Tlv(0x5F2F, b"\x78\x20")))
    disc = Discovery.parse(data)
    expected = PinUsage.APPLICATION_PIN | PinUsage.GLOBAL_PIN | PinUsage.OCC | PinUsage.VCI
    assert disc.pin_policy == expected
    assert disc.global_pin_primary
    # yy = 20 without the global-PIN bit does not make the global PIN primary
    data = bytes(Tlv(0x7E, Tlv(0x4F, aid) + Tlv(0x5F2F, b"\x40\x20")))
    assert not Discovery.parse(data).global_pin_primary


def test_discovery_missing_policy() -> None:
    with pytest.raises(ObjectError):
        Discovery.parse(bytes(Tlv(0x7E, Tlv(0x4F, b"\xa0"))))


def test_apt_minimal_reference_sample() -> None:
    data = bytes.fromhex("61164F0BA0000003080000100001007907 4F05A000000308".replace(" ", ""))
    apt = ApplicationPropertyTemplate.parse(data)
    assert apt.aid == bytes.fromhex("A000000308000010000100")
    assert apt.authority_aid == bytes.fromhex("A000000308")
    assert (apt.label, apt.algorithms) == (None, ())
    assert apt.encode() == data


def test_apt_with_label_and_algorithms() -> None:
    apt = ApplicationPropertyTemplate(
        aid=bytes.fromhex("A000000308000010000100"),
        label="hwgate test card",
        algorithms=(0x07, 0x11),
        authority_aid=bytes.fromhex("A000000308"),
    )
    assert ApplicationPropertyTemplate.parse(apt.encode()) == apt


def test_slots() -> None:
    assert Slot.AUTHENTICATION.certificate_tag == 0x5FC105
    assert Slot.SIGNATURE.certificate_tag == 0x5FC10A
    assert Slot.KEY_MANAGEMENT.certificate_tag == 0x5FC10B
    assert Slot.CARD_AUTH.certificate_tag == 0x5FC101
    assert Slot.CARD_MANAGEMENT.certificate_tag is None
    assert Slot.SIGNATURE.pin_policy is PinPolicy.ALWAYS
    assert Slot.CARD_AUTH.pin_policy is PinPolicy.NEVER
    assert Slot.AUTHENTICATION.pin_policy is PinPolicy.ONCE
    assert Slot.KEY_MANAGEMENT.pin_policy is PinPolicy.ONCE


def test_algorithms() -> None:
    assert [(a.value, a.key_bits, a.is_rsa) for a in Algorithm] == [
        (0x06, 1024, True),
        (0x07, 2048, True),
        (0x11, 256, False),
        (0x14, 384, False),
    ]
    assert Algorithm.RSA2048.block_size == 256
    assert Algorithm.ECCP384.block_size == 48


def _only_parse_errors(parser: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(PivParseError):
        parser(data)


def _tlv_soup() -> st.SearchStrategy[bytes]:
    """Mostly well-formed outer TLVs with random inner bytes, so parsers get past tag 53."""
    inner = st.lists(
        st.tuples(
            st.sampled_from([0x30, 0x34, 0x35, 0x36, 0x3E, 0x4F, 0x5F2F, 0x70, 0x71, 0x79, 0xAC]),
            st.binary(max_size=40),
        ),
        max_size=5,
    ).map(lambda items: b"".join(Tlv(t, v) for t, v in items))
    outer = st.tuples(st.sampled_from([0x53, 0x61, 0x7E]), inner).map(lambda tv: bytes(Tlv(*tv)))
    return st.one_of(st.binary(max_size=80), outer)


PARSERS = [
    Chuid.parse,
    parse_certificate_object,
    Discovery.parse,
    ApplicationPropertyTemplate.parse,
]


@settings(max_examples=300)
@given(_tlv_soup())
def test_parsers_raise_only_parse_errors(data: bytes) -> None:
    for parser in PARSERS:
        _only_parse_errors(parser, data)


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_certificate_parser_on_random_gzip_payloads(payload: bytes) -> None:
    blob = gzip.compress(payload)[: len(payload) // 2 + 10]
    _only_parse_errors(
        parse_certificate_object, bytes(Tlv(0x53, Tlv(0x70, blob) + Tlv(0x71, b"\x01")))
    )
