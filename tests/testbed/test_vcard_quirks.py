"""The virtual card's quirk profiles, in process (APDUs in, bytes out) and, for T=0,
through pcscd: what each profile serves, byte for byte, without the daemon."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from smartcard import scard

from hwgate_testbed.vcard import CardProfile, PivApplet, PivCa, Slot, ensure_piv_ca, provision_card
from hwgate_testbed.vcard.atr import ATR, T0_ATR
from hwgate_testbed.vcard.objects import PIV_AID
from hwgate_testbed.vcard.quirk_material import (
    MaterialMissing,
    ensure_material,
    material_dir,
    with_material,
)
from hwgate_testbed.vcard.quirks import PROFILES, quirk_profile
from hwgated.piv.tlv import Tlv

PIN_BLOCK = b"123456\xff\xff"
SELECT = b"\x00\xa4\x04\x00" + bytes([len(PIV_AID)]) + PIV_AID + b"\x00"
GET_DISCOVERY = bytes.fromhex("00CB3FFF035C017E00")
GET_CHUID = bytes.fromhex("00CB3FFF055C035FC10200")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PivCa:
    return ensure_piv_ca(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory: pytest.TempPathFactory, ca: PivCa) -> Path:
    directory = tmp_path_factory.mktemp("card")
    provision_card(directory, "Quinn Quirk", "ecc", ca)
    return directory


def applet(card_dir: Path, name: str, ca: PivCa | None = None) -> PivApplet:
    quirks = quirk_profile(name)
    if ca is not None:
        ensure_material(card_dir, quirks, ca)
    return PivApplet(with_material(CardProfile.load(card_dir), card_dir, quirks), quirks)


def send(card: PivApplet, apdu: bytes) -> tuple[bytes, int]:
    resp = card.process(apdu)
    return resp[:-2], int.from_bytes(resp[-2:], "big")


def get_response(card: PivApplet, le: int) -> tuple[bytes, int]:
    return send(card, bytes([0x00, 0xC0, 0x00, 0x00, le & 0xFF]))


def collect(card: PivApplet, apdu: bytes) -> tuple[bytes, list[int]]:
    """Send *apdu* (again with Le = xx after a 6Cxx), follow 61xx with exactly xx;
    the body and every SW seen."""
    body, sw = send(card, apdu)
    sws = [sw]
    if sw >> 8 == 0x6C:
        body, sw = send(card, apdu[:-1] + bytes([sw & 0xFF]))
        sws.append(sw)
    while sw >> 8 == 0x61:
        more, sw = get_response(card, sw & 0xFF)
        body += more
        sws.append(sw)
    return body, sws


def algorithms(apt: bytes) -> list[int]:
    listed = Tlv.parse_dict(Tlv.unpack(0x61, apt))[0xAC]
    return [t.value[0] for t in Tlv.parse_list(listed) if t.tag == 0x80]


def test_every_profile_starts(card_dir: Path, ca: PivCa) -> None:
    for name in PROFILES:
        card = applet(card_dir, name, ca)
        expected = 0x6A82 if name in ("not-piv", "piv-after-install") else 0x9000
        assert collect(card, SELECT)[1][-1] == expected, name


def test_t0_sends_data_only_through_get_response(card_dir: Path) -> None:
    card = applet(card_dir, "t0")
    body, sw = send(card, SELECT)
    assert (body, sw >> 8) == (b"", 0x61)
    apt_len = sw & 0xFF
    assert get_response(card, apt_len + 1) == (b"", 0x6C00 | apt_len)  # more than is left
    apt, sw = get_response(card, apt_len)
    assert sw == 0x9000 and apt[0] == 0x61 and len(apt) == apt_len
    assert send(card, b"\x00\xcb\x3f\xff\x00\x00\x03\x5c\x01\x7e\x00\x00")[1] == 0x6700
    assert T0_ATR[1] & 0x80 == 0 and ATR[1] & 0x80  # no TD1: T=0 is the only protocol


def test_wrong_le_answers_6cxx_and_keeps_the_answer_for_the_repetition(card_dir: Path) -> None:
    card = applet(card_dir, "wrong-le")
    plain = applet(card_dir, "standard")
    discovery = collect(plain, GET_DISCOVERY)[0]
    assert send(card, GET_DISCOVERY) == (b"", 0x6C00 | len(discovery))
    assert send(card, GET_DISCOVERY[:-1] + bytes([len(discovery)])) == (discovery, 0x9000)
    # A signature is computed once: the repetition returns the same one, no second operation.
    assert send(card, b"\x00\x20\x00\x80\x08" + PIN_BLOCK)[1] == 0x9000
    digest = hashlib.sha256(b"x").digest()
    ga = b"\x00\x87\x11\x9a" + bytes([len(Tlv(0x7C, Tlv(0x82) + Tlv(0x81, digest)))])
    ga += Tlv(0x7C, Tlv(0x82) + Tlv(0x81, digest))
    _, sw = send(card, ga + b"\x00")
    assert sw >> 8 == 0x6C
    first, sw = send(card, ga + bytes([sw & 0xFF]))
    assert sw == 0x9000
    signature = Tlv.parse_dict(Tlv.unpack(0x7C, first))[0x82]
    key = CardProfile.load(card_dir).slots[Slot.AUTHENTICATION].key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    key.public_key().verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    assert send(card, GET_DISCOVERY[:-1] + bytes([len(discovery)])) == (discovery, 0x9000)


def test_chunked_255_never_sends_more_than_255(card_dir: Path) -> None:
    card = applet(card_dir, "chunked-255")
    assert collect(card, SELECT)[1][-1] == 0x9000
    body, sws = collect(card, GET_CHUID)
    assert body == collect(applet(card_dir, "standard"), GET_CHUID)[0]
    assert len(body) > 255 and sws[0] == 0x61FF and sws[-1] == 0x9000
    assert send(card, GET_CHUID)[0] == body[:255]


def test_global_pin_card_takes_the_cardholder_pin_as_global_pin(card_dir: Path) -> None:
    card = applet(card_dir, "global-pin")
    assert send(card, b"\x00\x20\x00\x80\x08" + PIN_BLOCK)[1] == 0x63C2  # not the PIV PIN
    assert send(card, b"\x00\x20\x00\x00")[1] == 0x63C3
    assert send(card, b"\x00\x20\x00\x00\x08" + PIN_BLOCK)[1] == 0x9000
    assert card.pin_verified
    assert send(applet(card_dir, "standard"), b"\x00\x20\x00\x00\x08" + PIN_BLOCK)[1] == 0x6A88


def test_content_profiles(card_dir: Path, ca: PivCa) -> None:
    provisioned = CardProfile.load(card_dir)
    assert algorithms(collect(applet(card_dir, "standard"), SELECT)[0]) == [0x07, 0x11]
    rsa_only = applet(card_dir, "rsa-only", ca)
    assert algorithms(collect(rsa_only, SELECT)[0]) == [0x07]
    p384 = applet(card_dir, "p384-auth", ca)
    assert algorithms(collect(p384, SELECT)[0]) == [0x07, 0x11, 0x14]
    ensure_material(card_dir, quirk_profile("expired-9a"), ca)
    expired = with_material(provisioned, card_dir, quirk_profile("expired-9a"))
    old = expired.slots[Slot.AUTHENTICATION]
    assert old.certificate.not_valid_after_utc < dt.datetime.now(dt.UTC)
    assert old.key.private_numbers() == provisioned.slots[Slot.AUTHENTICATION].key.private_numbers()
    no_9e = applet(card_dir, "no-9e")
    assert send(no_9e, bytes.fromhex("00CB3FFF055C035FC10100"))[1] == 0x6A82
    unsigned = collect(applet(card_dir, "unsigned-chuid"), GET_CHUID)[0]
    assert Tlv.parse_dict(Tlv.unpack(0x53, unsigned))[0x3E] == b""


def test_material_is_issued_once_and_needed(card_dir: Path, ca: PivCa, tmp_path: Path) -> None:
    quirks = quirk_profile("p384-auth")
    ensure_material(card_dir, quirks, ca)
    stamp = (material_dir(card_dir, quirks) / "slot-9a.cert.pem").stat().st_mtime_ns
    ensure_material(card_dir, quirks, ca)
    assert (material_dir(card_dir, quirks) / "slot-9a.cert.pem").stat().st_mtime_ns == stamp
    fresh = tmp_path / "fresh"
    provision_card(fresh, "Nat New", "ecc", ca)
    with pytest.raises(MaterialMissing):
        with_material(CardProfile.load(fresh), fresh, quirks)


@pytest.mark.testbed
def test_pcscd_connects_a_t0_card_with_t0(cards: object) -> None:
    """As far as vpcd allows: pcscd picks T=0 from the ATR, and the card answers as a
    T=0 card looks through a reader (61xx, then GET RESPONSE)."""
    handle = cards.insert(1, "alice", profile="t0")  # type: ignore[attr-defined]
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hr == scard.SCARD_S_SUCCESS
    try:
        hr, card, protocol = scard.SCardConnect(
            ctx, handle.reader, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )  # fmt: skip
        assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
        try:
            assert protocol == scard.SCARD_PROTOCOL_T0
            hr, resp = scard.SCardTransmit(card, protocol, list(SELECT))
            assert hr == scard.SCARD_S_SUCCESS and len(resp) == 2 and resp[0] == 0x61
            hr, resp = scard.SCardTransmit(card, protocol, [0x00, 0xC0, 0x00, 0x00, resp[1]])
            assert bytes(resp[-2:]) == b"\x90\x00" and resp[0] == 0x61
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardReleaseContext(ctx)
