"""The virtual PIV card, in process: APDUs in, SP 800-73-4 bytes and status words out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgate_testbed.vcard import (
    ATR,
    CardProfile,
    PivApplet,
    PivCa,
    Slot,
    ensure_piv_ca,
    provision_card,
    run_card,
    vpcd,
)
from hwgate_testbed.vcard.objects import CERT_TAGS, PIV_AID, chuid_content
from hwgate_testbed.vcard.quirks import quirk_profile
from hwgate_testbed.vcard.vpcd import redact
from hwgated.piv.fascn import Fascn
from hwgated.piv.tlv import Tlv

PIN = b"123456\xff\xff"
WRONG_PIN = b"654321\xff\xff"
OID_FASCN = x509.ObjectIdentifier("2.16.840.1.101.3.6.6")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PivCa:
    return ensure_piv_ca(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def ecc_profile(tmp_path_factory: pytest.TempPathFactory, ca: PivCa) -> CardProfile:
    return provision_card(tmp_path_factory.mktemp("ecc"), "Erin Ecc", "ecc", ca)


@pytest.fixture(scope="module")
def rsa_profile(tmp_path_factory: pytest.TempPathFactory, ca: PivCa) -> CardProfile:
    return provision_card(tmp_path_factory.mktemp("rsa"), "Rita Rsa", "rsa", ca)


@pytest.fixture
def ecc(ecc_profile: CardProfile) -> PivApplet:
    return PivApplet(ecc_profile)


@pytest.fixture
def rsa_card(rsa_profile: CardProfile) -> PivApplet:
    return PivApplet(rsa_profile)


def send(card: PivApplet, apdu: bytes | str) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    resp = card.process(raw)
    assert len(resp) >= 2
    return resp[:-2], int.from_bytes(resp[-2:], "big")


def get_data(card: PivApplet, tag: int) -> tuple[bytes, int]:
    """GET DATA with full response chaining; returns the whole body and final SW."""
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    body, sw = send(
        card, b"\x00\xcb\x3f\xff" + bytes([len(tag_bytes) + 2]) + Tlv(0x5C, tag_bytes) + b"\x00"
    )
    assert len(body) <= 256
    while sw >> 8 == 0x61:
        more, sw = send(card, bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
        assert len(more) <= 256
        body += more
    return body, sw


def verify(card: PivApplet, block: bytes = PIN) -> int:
    return send(card, b"\x00\x20\x00\x80\x08" + block)[1]


def general_authenticate(
    card: PivApplet, alg: int, slot: int, template: bytes
) -> tuple[bytes, int]:
    data = Tlv(0x7C, template)
    if len(data) <= 255:
        return send(card, bytes([0x00, 0x87, alg, slot, len(data)]) + data + b"\x00")
    first, rest = data[:200], data[200:]
    _, sw = send(card, bytes([0x10, 0x87, alg, slot, len(first)]) + first)
    assert sw == 0x9000
    body, sw = send(card, bytes([0x00, 0x87, alg, slot, len(rest)]) + rest + b"\x00")
    while sw >> 8 == 0x61:
        more, sw = send(card, bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
        body += more
    return body, sw


def sign(card: PivApplet, alg: int, slot: int, payload: bytes) -> tuple[bytes, int]:
    body, sw = general_authenticate(card, alg, slot, Tlv(0x82) + Tlv(0x81, payload))
    if sw != 0x9000:
        return b"", sw
    return Tlv.parse_dict(Tlv.unpack(0x7C, body))[0x82], sw


def pkcs1_block(message: bytes) -> bytes:
    digest_info = (
        bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(message).digest()
    )
    return b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00" + digest_info


# -- SELECT ----------------------------------------------------------------------------


@pytest.mark.parametrize("aid", [PIV_AID, PIV_AID[:9], PIV_AID[:5]], ids=["full", "9-byte", "rid"])
def test_select_piv_returns_apt(ecc: PivApplet, aid: bytes) -> None:
    body, sw = send(ecc, b"\x00\xa4\x04\x00" + bytes([len(aid)]) + aid + b"\x00")
    assert sw == 0x9000
    apt = Tlv.parse_dict(Tlv.unpack(0x61, body))
    assert apt[0x4F] == PIV_AID
    assert apt[0x79] == bytes.fromhex("4F05A000000308")
    assert body.startswith(bytes.fromhex("61")) and body[2:15] == Tlv(0x4F, PIV_AID)
    algs = [t.value for t in Tlv.parse_list(apt[0xAC]) if t.tag == 0x80]
    assert algs == [b"\x07", b"\x11"]


def test_select_other_aid_is_not_found_and_clears_pin(ecc: PivApplet) -> None:
    assert verify(ecc) == 0x9000
    assert send(ecc, "00A4040007A000000527200100")[1] == 0x6A82
    assert send(ecc, "00CB3FFF035C017E00")[1] == 0x6D00  # PIV no longer selected
    assert send(ecc, "00A4040009A0000003080000100000")[1] == 0x9000
    assert send(ecc, "0020008000")[1] == 0x63C3


def test_reselect_piv_keeps_pin(ecc: PivApplet) -> None:
    assert verify(ecc) == 0x9000
    assert send(ecc, "00A4040009A0000003080000100000")[1] == 0x9000
    assert send(ecc, "0020008000")[1] == 0x9000


def test_select_bad_p1(ecc: PivApplet) -> None:
    assert send(ecc, "00A4000009A0000003080000100000")[1] == 0x6A86


# -- GET DATA --------------------------------------------------------------------------


def test_chuid(ecc: PivApplet, ecc_profile: CardProfile, ca: PivCa) -> None:
    body, sw = get_data(ecc, 0x5FC102)
    assert sw == 0x9000
    tlvs = Tlv.parse_list(Tlv.unpack(0x53, body))
    assert [t.tag for t in tlvs] == [0x30, 0x34, 0x35, 0x3E, 0xFE]
    fields = {t.tag: t.value for t in tlvs}
    assert Fascn.decode(fields[0x30]) == ecc_profile.fascn
    assert fields[0x34] == ecc_profile.guid.bytes
    assert fields[0x35] == ecc_profile.expiry.strftime("%Y%m%d").encode()
    assert fields[0xFE] == b""
    check_chuid_signature(fields[0x3E], b"".join(tlvs[:3]), ca)


def check_chuid_signature(der: bytes, content: bytes, ca: PivCa) -> None:
    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "signed_data"
    signed = info["content"]
    assert signed["encap_content_info"]["content_type"].dotted == "2.16.840.1.101.3.6.1"
    assert signed["encap_content_info"]["content"].native is None  # detached
    signer = signed["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
    assert attrs["message_digest"].native == hashlib.sha256(content).digest()
    to_verify = b"\x31" + signer["signed_attrs"].dump()[1:]  # [0] IMPLICIT -> SET OF
    ca_public = ca.certificate.public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    ca_public.verify(signer["signature"].native, to_verify, ec.ECDSA(hashes.SHA256()))


def test_chuid_content_matches_signed_content(ecc_profile: CardProfile, ecc: PivApplet) -> None:
    body, _ = get_data(ecc, 0x5FC102)
    assert Tlv.unpack(0x53, body).startswith(chuid_content(ecc_profile))


def test_discovery_object(ecc: PivApplet) -> None:
    body, sw = get_data(ecc, 0x7E)
    assert sw == 0x9000
    assert body == bytes.fromhex("7E124F0BA0000003080000100001005F2F024010")


def test_ccc(ecc: PivApplet) -> None:
    body, sw = get_data(ecc, 0x5FC107)
    assert sw == 0x9000
    ccc = Tlv.parse_dict(Tlv.unpack(0x53, body))
    assert ccc[0xF0][:7] == bytes.fromhex("A000000116FF02") and len(ccc[0xF0]) == 21
    assert ccc[0xF5] == b"\x10"
    assert ccc[0xFE] == b""


def test_key_history(ecc: PivApplet) -> None:
    body, sw = get_data(ecc, 0x5FC10C)
    assert (body, sw) == (bytes.fromhex("5308C10100C20100FE00"), 0x9000)


@pytest.mark.parametrize("slot", list(Slot))
def test_certificate_containers(rsa_card: PivApplet, rsa_profile: CardProfile, slot: Slot) -> None:
    body, sw = get_data(rsa_card, CERT_TAGS[slot])
    assert sw == 0x9000
    container = Tlv.parse_dict(Tlv.unpack(0x53, body))
    der = container[0x70]
    if slot is Slot.KEY_MANAGEMENT:
        assert container[0x71] == b"\x01"
        der = gzip.decompress(der)
    else:
        assert container[0x71] == b"\x00"
    assert container[0xFE] == b""
    expected = rsa_profile.slots[slot].certificate
    assert der == expected.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("tag", ["5C035FC103", "5C035FC106", "5C027F61", "5C035FC10D"])
def test_absent_objects_not_found(ecc: PivApplet, tag: str) -> None:
    data = bytes.fromhex(tag)
    assert send(ecc, b"\x00\xcb\x3f\xff" + bytes([len(data)]) + data + b"\x00")[1] == 0x6A82


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00CB3FFE055C035FC10200", 0x6A86),  # wrong P1P2
        ("00CB3FFF055D035FC10200", 0x6A80),  # not a tag list
        ("00CB3FFF055C055FC10200", 0x6A80),  # overrunning length
        ("00CB3FFF065C045FC1020100", 0x6A80),  # tag too long
    ],
)
def test_get_data_malformed(ecc: PivApplet, apdu: str, sw: int) -> None:
    assert send(ecc, apdu)[1] == sw


# -- response chaining -----------------------------------------------------------------


def test_response_chaining_in_256_byte_chunks(rsa_card: PivApplet) -> None:
    body, sw = send(rsa_card, "00CB3FFF055C035FC10500")
    assert len(body) == 256 and sw >> 8 == 0x61
    chunks = [body]
    while sw >> 8 == 0x61:
        body, sw = send(rsa_card, bytes([0, 0xC0, 0, 0, sw & 0xFF]))
        chunks.append(body)
    assert sw == 0x9000
    assert all(len(c) <= 256 for c in chunks) and len(chunks) >= 4
    whole, _ = get_data(rsa_card, 0x5FC105)
    assert b"".join(chunks) == whole


def test_get_response_honours_le_and_needs_pending(rsa_card: PivApplet) -> None:
    assert send(rsa_card, "00C0000000")[1] == 0x6985
    _, sw = send(rsa_card, "00CB3FFF055C035FC10500")
    body, sw = send(rsa_card, "00C0000010")
    assert len(body) == 0x10 and sw == 0x6100
    send(rsa_card, "00CB3FFF035C017E00")  # any other command drops the pending response
    assert send(rsa_card, "00C0000000")[1] == 0x6985


def test_extended_le_returns_everything(rsa_card: PivApplet) -> None:
    body, sw = send(rsa_card, "00CB3FFF0000055C035FC1050000")
    assert sw == 0x9000 and len(body) > 512
    assert body == get_data(rsa_card, 0x5FC105)[0]


def test_short_le_smaller_than_object_chains(ecc: PivApplet) -> None:
    body, sw = send(ecc, "00CB3FFF055C035FC10C08")
    assert (body, sw) == (bytes.fromhex("5308C10100C20100"), 0x6102)
    assert send(ecc, "00C0000002") == (bytes.fromhex("FE00"), 0x9000)


# -- VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER ------------------------------------


def test_verify_right_pin(ecc: PivApplet) -> None:
    assert send(ecc, "0020008000")[1] == 0x63C3
    assert verify(ecc) == 0x9000
    assert send(ecc, "0020008000")[1] == 0x9000
    assert ecc.pin_verified


def test_wrong_pin_counts_down_and_blocks(ecc: PivApplet) -> None:
    assert [verify(ecc, WRONG_PIN) for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert verify(ecc, WRONG_PIN) == 0x6983
    assert verify(ecc) == 0x6983  # even the right PIN
    assert send(ecc, "0020008000")[1] == 0x6983


def test_right_pin_resets_counter(ecc: PivApplet) -> None:
    assert verify(ecc, WRONG_PIN) == 0x63C2
    assert verify(ecc) == 0x9000
    assert verify(ecc, WRONG_PIN) == 0x63C2
    assert not ecc.pin_verified


def test_verify_reset_security_status(ecc: PivApplet) -> None:
    assert verify(ecc) == 0x9000
    assert send(ecc, "0020FF80")[1] == 0x9000
    assert send(ecc, "0020008000")[1] == 0x63C3


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("0020008006313233343536", 0x6A80),  # not padded to 8
        ("00200080083132333435FFFFFF", 0x6A80),  # 5 digits
        ("002000800831323334353661FF", 0x6A80),  # not a digit
        ("0020000008313233343536FFFF", 0x6A88),  # global PIN not supported
        ("0020018008313233343536FFFF", 0x6A86),
        ("00200080", 0x63C3),  # case 1 is also a status query
    ],
)
def test_verify_bad_input_does_not_spend_retries(ecc: PivApplet, apdu: str, sw: int) -> None:
    assert send(ecc, apdu)[1] == sw
    assert send(ecc, "0020008000")[1] == 0x63C3


@pytest.mark.parametrize("event", ["reset", "power_off", "power_on"])
def test_card_events_clear_security_status(ecc: PivApplet, event: str) -> None:
    assert verify(ecc, WRONG_PIN) == 0x63C2
    assert verify(ecc) == 0x9000
    getattr(ecc, event)()
    assert send(ecc, "0020008000")[1] == 0x63C3  # counter kept, status gone


def test_change_pin(ecc: PivApplet) -> None:
    new = b"87654321"
    assert send(ecc, b"\x00\x24\x00\x80\x10" + WRONG_PIN + new)[1] == 0x63C2
    assert send(ecc, b"\x00\x24\x00\x80\x10" + PIN + new)[1] == 0x9000
    assert verify(ecc) == 0x63C2
    assert verify(ecc, new) == 0x9000


def test_reset_retry_counter_with_puk(ecc: PivApplet) -> None:
    for _ in range(3):
        verify(ecc, WRONG_PIN)
    assert verify(ecc) == 0x6983
    assert send(ecc, b"\x00\x2c\x00\x80\x10" + b"00000000" + b"11112222")[1] == 0x63C2
    assert send(ecc, b"\x00\x2c\x00\x80\x10" + b"12345678" + b"11112222")[1] == 0x9000
    assert verify(ecc, b"11112222") == 0x9000


def reset_retry(card: PivApplet, puk: bytes, new_pin: bytes = b"11112222") -> int:
    return send(card, b"\x00\x2c\x00\x80\x10" + puk + new_pin.ljust(8, b"\xff"))[1]


def test_puk_blocks_after_its_retries_and_a_right_puk_resets_them(ecc: PivApplet) -> None:
    assert reset_retry(ecc, b"00000000") == 0x63C2
    assert reset_retry(ecc, b"12345678") == 0x9000  # the PUK's counter is back at 3
    assert [reset_retry(ecc, b"00000000") for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert reset_retry(ecc, b"12345678") == 0x6983  # blocked: even the right PUK
    assert verify(ecc, b"11112222") == 0x9000  # the PIN set before is untouched


def test_change_pin_sets_the_security_status(ecc: PivApplet) -> None:
    """SP 800-73-4 part 2 §3.2.2: a successful CHANGE REFERENCE DATA verifies the PIN."""
    assert send(ecc, b"\x00\x24\x00\x80\x10" + PIN + b"87654321")[1] == 0x9000
    assert send(ecc, "0020008000")[1] == 0x9000


def test_puk_bytes_may_be_any_value(ecc: PivApplet) -> None:
    binary = bytes([0x00, 0xFF, 0x80, 0x7F, 0x01, 0xFE, 0x30, 0x39])
    assert send(ecc, b"\x00\x24\x00\x81\x10" + b"12345678" + binary)[1] == 0x9000
    assert reset_retry(ecc, binary) == 0x9000


@pytest.mark.parametrize(
    "changes",
    [{"puk": "1234567"}, {"puk": "123456789"}, {"pin": "12345"}, {"pin": "12a456"},
     {"puk_retries": 0}, {"pin_retries": 16}],
)  # fmt: skip
def test_profiles_hold_sp800_73_pins_and_puks(
    ecc_profile: CardProfile, changes: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(ecc_profile, **changes)  # type: ignore[arg-type]


# -- GENERAL AUTHENTICATE --------------------------------------------------------------


@pytest.mark.parametrize("slot", [Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.CARD_AUTH])
def test_rsa_signature_verifies(rsa_card: PivApplet, rsa_profile: CardProfile, slot: Slot) -> None:
    if slot is not Slot.CARD_AUTH:
        assert verify(rsa_card) == 0x9000
    sig, sw = sign(rsa_card, 0x07, slot, pkcs1_block(b"hello"))
    assert sw == 0x9000 and len(sig) == 256
    public = rsa_profile.slots[slot].certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sig, b"hello", padding.PKCS1v15(), hashes.SHA256())


def test_rsa_key_management_decrypts(rsa_card: PivApplet, rsa_profile: CardProfile) -> None:
    public = rsa_profile.slots[Slot.KEY_MANAGEMENT].certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    ciphertext = public.encrypt(b"session key", padding.PKCS1v15())
    assert verify(rsa_card) == 0x9000
    plain, sw = sign(rsa_card, 0x07, Slot.KEY_MANAGEMENT, ciphertext)
    assert sw == 0x9000
    assert plain.startswith(b"\x00\x02") and plain.endswith(b"\x00session key")


@pytest.mark.parametrize("slot", list(Slot))
def test_ecdsa_signature_verifies(ecc: PivApplet, ecc_profile: CardProfile, slot: Slot) -> None:
    digest = hashlib.sha256(b"hello").digest()
    assert verify(ecc) == 0x9000
    sig, sw = sign(ecc, 0x11, slot, digest)
    assert sw == 0x9000
    public = ecc_profile.slots[slot].certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_ecdsa_truncates_long_hash(ecc: PivApplet, ecc_profile: CardProfile) -> None:
    digest = hashlib.sha384(b"hello").digest()
    sig, sw = sign(ecc, 0x11, Slot.CARD_AUTH, digest)
    assert sw == 0x9000
    public = ecc_profile.slots[Slot.CARD_AUTH].certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA384())))


def test_ecdh_on_key_management(ecc: PivApplet, ecc_profile: CardProfile) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    point = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert verify(ecc) == 0x9000
    body, sw = general_authenticate(ecc, 0x11, 0x9D, Tlv(0x82) + Tlv(0x85, point))
    assert sw == 0x9000
    card_public = ecc_profile.slots[Slot.KEY_MANAGEMENT].certificate.public_key()
    assert isinstance(card_public, ec.EllipticCurvePublicKey)
    expected = peer.exchange(ec.ECDH(), card_public)
    assert Tlv.parse_dict(Tlv.unpack(0x7C, body))[0x82] == expected
    # ECDH is only for the key management key
    assert general_authenticate(ecc, 0x11, 0x9A, Tlv(0x82) + Tlv(0x85, point))[1] == 0x6A80


@pytest.mark.parametrize("slot", [Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.KEY_MANAGEMENT])
def test_pin_protected_slots_need_pin(ecc: PivApplet, slot: Slot) -> None:
    assert sign(ecc, 0x11, slot, bytes(32))[1] == 0x6982


def test_card_auth_needs_no_pin(ecc: PivApplet) -> None:
    assert sign(ecc, 0x11, Slot.CARD_AUTH, bytes(32))[1] == 0x9000


def test_pin_always_on_9c(ecc: PivApplet) -> None:
    assert verify(ecc) == 0x9000
    assert sign(ecc, 0x11, Slot.SIGNATURE, bytes(32))[1] == 0x9000
    assert sign(ecc, 0x11, Slot.SIGNATURE, bytes(32))[1] == 0x6982  # used up
    assert sign(ecc, 0x11, Slot.AUTHENTICATION, bytes(32))[1] == 0x9000  # 9A still fine
    assert verify(ecc) == 0x9000
    assert send(ecc, "00CB3FFF035C017E00")[1] == 0x9000  # anything in between ...
    assert sign(ecc, 0x11, Slot.SIGNATURE, bytes(32))[1] == 0x6982  # ... spoils it
    assert verify(ecc) == 0x9000
    assert send(ecc, "0020008000")[1] == 0x9000  # even a status query
    assert sign(ecc, 0x11, Slot.SIGNATURE, bytes(32))[1] == 0x6982


def test_pin_always_survives_command_chaining(rsa_card: PivApplet) -> None:
    assert verify(rsa_card) == 0x9000
    sig, sw = sign(rsa_card, 0x07, Slot.SIGNATURE, pkcs1_block(b"x"))  # 2 chained APDUs
    assert sw == 0x9000 and len(sig) == 256


def test_command_chaining_splits_data(rsa_card: PivApplet, rsa_profile: CardProfile) -> None:
    data = Tlv(0x7C, Tlv(0x82) + Tlv(0x81, pkcs1_block(b"chained")))
    parts = [data[:100], data[100:200], data[200:]]
    for part in parts[:-1]:
        assert send(rsa_card, bytes([0x10, 0x87, 0x07, 0x9E, len(part)]) + part)[1] == 0x9000
    body, sw = send(rsa_card, bytes([0x00, 0x87, 0x07, 0x9E, len(parts[-1])]) + parts[-1] + b"\x00")
    assert sw >> 8 == 0x61
    more, sw = send(rsa_card, bytes([0, 0xC0, 0, 0, sw & 0xFF]))
    sig = Tlv.parse_dict(Tlv.unpack(0x7C, body + more))[0x82]
    public = rsa_profile.slots[Slot.CARD_AUTH].certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sig, b"chained", padding.PKCS1v15(), hashes.SHA256())


def test_interrupted_chain_is_dropped(rsa_card: PivApplet) -> None:
    data = Tlv(0x7C, Tlv(0x82) + Tlv(0x81, pkcs1_block(b"x")))
    assert send(rsa_card, bytes([0x10, 0x87, 0x07, 0x9E, 200]) + data[:200])[1] == 0x9000
    assert send(rsa_card, "00CB3FFF035C017E00")[1] == 0x9000
    rest = data[200:]
    assert send(rsa_card, bytes([0x00, 0x87, 0x07, 0x9E, len(rest)]) + rest)[1] == 0x6A80


def test_chaining_other_commands_unsupported(ecc: PivApplet) -> None:
    assert send(ecc, "10CB3FFF035C017E")[1] == 0x6884


@pytest.mark.parametrize(
    ("alg", "slot", "template", "sw"),
    [
        (0x07, 0x9E, "8200 8120" + "00" * 32, 0x6A86),  # RSA alg on an EC key
        (0x14, 0x9E, "8200 8120" + "00" * 32, 0x6A86),  # P-384
        (0x11, 0x9B, "8200 8120" + "00" * 32, 0x6A86),  # no admin key
        (0x11, 0x82, "8200 8120" + "00" * 32, 0x6A86),  # no retired keys
        (0x11, 0x9E, "8120" + "00" * 32, 0x6A80),  # no response request
        (0x11, 0x9E, "8201AA 8120" + "00" * 32, 0x6A80),
        (0x11, 0x9E, "8200", 0x6A80),  # nothing to sign
        (0x11, 0x9E, "8200 8100", 0x6A80),  # empty hash
        (0x11, 0x9E, "8200 8140" + "00", 0x6A80),  # overrunning inner length
    ],
)
def test_general_authenticate_errors(
    ecc: PivApplet, alg: int, slot: int, template: str, sw: int
) -> None:
    body = bytes.fromhex(template.replace(" ", ""))
    assert general_authenticate(ecc, alg, slot, body)[1] == sw


def test_general_authenticate_needs_7c(ecc: PivApplet) -> None:
    assert send(ecc, "0087119E047D02820000")[1] == 0x6A80


def test_rsa_input_must_be_one_block(rsa_card: PivApplet) -> None:
    assert sign(rsa_card, 0x07, Slot.CARD_AUTH, bytes(255))[1] == 0x6A80
    assert sign(rsa_card, 0x07, Slot.CARD_AUTH, b"\xff" * 256)[1] == 0x6A80  # >= modulus


# -- unsupported and malformed -----------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00FD000000", 0x6D00),  # YubiKey version probe
        ("00F8000000", 0x6D00),  # YubiKey serial probe
        ("00F7000000", 0x6D00),
        ("0047009A05AC03800111", 0x6D00),  # GENERATE not implemented
        ("80CB3FFF035C017E00", 0x6E00),
        ("FF00000000", 0x6E00),
        ("00", 0x6700),
        ("00CB3F", 0x6700),
        ("00CB3FFF055C017E", 0x6700),  # Lc larger than data
        ("00CB3FFF0000", 0x6700),  # extended Lc 0
    ],
)
def test_unsupported_and_malformed(ecc: PivApplet, apdu: str, sw: int) -> None:
    assert send(ecc, apdu)[1] == sw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(ecc_profile: CardProfile, raw: bytes) -> None:
    card = PivApplet(ecc_profile)
    resp = card.process(raw)
    assert len(resp) >= 2 and resp[-2:] != b"\x6f\x00"


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([0x00, 0x10]),
    st.sampled_from([0xA4, 0xCB, 0x20, 0x24, 0x2C, 0x87, 0xC0]),
    st.integers(0, 255),
    st.sampled_from([0x00, 0x80, 0x81, 0x9A, 0x9C, 0x9D, 0x9E, 0xFF]),
    st.binary(max_size=270),
)
def test_arbitrary_commands_never_raise(
    ecc_profile: CardProfile, cla: int, ins: int, p1: int, p2: int, data: bytes
) -> None:
    card = PivApplet(ecc_profile)
    card.process(b"\x00\x20\x00\x80\x08" + PIN)
    raw = bytes([cla, ins, p1, p2]) + (bytes([len(data)]) + data if 0 < len(data) < 256 else b"")
    for _ in range(2):  # twice: chaining and pending state on the second
        resp = card.process(raw)
        assert len(resp) >= 2 and resp[-2:] != b"\x6f\x00"


# -- profile, CA, certificates --------------------------------------------------------------


def test_profile_round_trip(tmp_path: Path, ca: PivCa) -> None:
    profile = provision_card(tmp_path / "card", "Paula Profile", "ecc", ca)
    loaded = CardProfile.load(tmp_path / "card")
    assert (loaded.name, loaded.key_type, loaded.fascn, loaded.guid, loaded.expiry) == (
        profile.name,
        profile.key_type,
        profile.fascn,
        profile.guid,
        profile.expiry,
    )
    assert loaded.chuid_signature == profile.chuid_signature
    assert loaded.compressed_slots == profile.compressed_slots
    assert set(loaded.slots) == set(Slot)
    for slot in Slot:
        assert loaded.slots[slot].certificate == profile.slots[slot].certificate
    assert stat.S_IMODE((tmp_path / "card" / "slot-9a.key.pem").stat().st_mode) == 0o600
    assert PivApplet(loaded).process(bytes.fromhex("00CB3FFF035C017E00"))[-2:] == b"\x90\x00"


def test_ensure_ca_is_idempotent(tmp_path: Path) -> None:
    first = ensure_piv_ca(tmp_path)
    second = ensure_piv_ca(tmp_path)
    assert first.certificate == second.certificate
    assert stat.S_IMODE((tmp_path / "piv-ca.key").stat().st_mode) == 0o600
    assert (tmp_path / "piv-ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")


def test_two_cards_differ(ecc_profile: CardProfile, rsa_profile: CardProfile) -> None:
    assert ecc_profile.fascn.credential_number != rsa_profile.fascn.credential_number or (
        ecc_profile.fascn.pi != rsa_profile.fascn.pi
    )
    assert ecc_profile.guid != rsa_profile.guid


def test_piv_auth_certificate(ecc_profile: CardProfile, ca: PivCa) -> None:
    cert = ecc_profile.slots[Slot.AUTHENTICATION].certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "Erin Ecc"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    other = san.get_values_for_type(x509.OtherName)
    assert [o.type_id for o in other] == [OID_FASCN]
    assert other[0].value == b"\x04\x19" + ecc_profile.fascn.encode()
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ecc_profile.guid.urn]
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.16.840.1.101.3.2.1.3.13"]
    card_end = dt.datetime.combine(ecc_profile.expiry, dt.time(), dt.UTC)
    assert cert.not_valid_after_utc <= card_end
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_card_auth_certificate(rsa_profile: CardProfile) -> None:
    cert = rsa_profile.slots[Slot.CARD_AUTH].certificate
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.16.840.1.101.3.2.1.3.17"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [o.dotted_string for o in eku] == ["2.16.840.1.101.3.6.8"]
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048


def test_only_signature_and_key_management_certificates_carry_the_email(
    ecc_profile: CardProfile,
) -> None:
    """S/MIME issuance reads the cardholder's e-mail from the 9C/9D certificates."""
    for slot in Slot:
        cert = ecc_profile.slots[slot].certificate
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = san.get_values_for_type(x509.RFC822Name)
        wanted = (
            ["erin.ecc@hwgate.example"] if slot in (Slot.SIGNATURE, Slot.KEY_MANAGEMENT) else []
        )
        assert emails == wanted, slot
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ecc_profile.guid.urn]


# -- ATR and the vpcd client --------------------------------------------------------------


def test_atr_is_generic_t1_with_valid_tck() -> None:
    assert ATR[0] == 0x3B
    assert ATR[1] & 0x0F == len(ATR) - 7  # historical bytes: after TS T0 TD1 TD2 TA3 TB3
    assert ATR[2:4] == bytes([0x81, 0x31])  # T=1, not the "3B 8x 80 01" contactless form
    tck = 0
    for b in ATR[1:]:
        tck ^= b
    assert tck == 0
    assert not ATR.startswith(bytes.fromhex("3B808001"))


def test_redact_hides_pin_data() -> None:
    apdu = b"\x00\x20\x00\x80\x08" + PIN
    assert PIN not in redact(apdu) and redact(apdu)[:5] == apdu[:5]
    other = bytes.fromhex("00CB3FFF035C017E00")
    assert redact(other) == other


class FakeVpcd:
    """The reader side of vpcd's protocol on a loopback port."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.listener.settimeout(10)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(len(payload).to_bytes(2, "big") + payload)

    def receive(self) -> bytes:
        assert self.conn is not None
        head = self._exact(2)
        return self._exact(int.from_bytes(head, "big"))

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            assert chunk, "card closed the connection"
            buf += chunk
        return buf

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def fake_vpcd() -> Iterator[FakeVpcd]:
    reader = FakeVpcd()
    yield reader
    reader.close()


def test_vpcd_protocol(fake_vpcd: FakeVpcd, ecc_profile: CardProfile) -> None:
    applet = PivApplet(ecc_profile)
    stop = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_card(applet, ATR, stop, "127.0.0.1", fake_vpcd.port, connect_timeout=5)
        )
    )
    thread.start()
    fake_vpcd.accept()
    fake_vpcd.send(b"\x04")
    assert fake_vpcd.receive() == ATR
    fake_vpcd.send(b"\x01")
    fake_vpcd.send(b"\x00\x20\x00\x80\x08" + PIN)
    assert fake_vpcd.receive() == b"\x90\x00"
    assert applet.pin_verified
    fake_vpcd.send(b"\x02")  # reset
    fake_vpcd.send(bytes.fromhex("0020008000"))
    assert fake_vpcd.receive() == b"\x63\xc3"
    fake_vpcd.close()  # the reader goes away: the card session ends
    thread.join(timeout=5)
    assert not thread.is_alive() and result == [True]


def test_vpcd_stop_event(fake_vpcd: FakeVpcd, ecc_profile: CardProfile) -> None:
    stop = threading.Event()
    thread = threading.Thread(
        target=run_card, args=(PivApplet(ecc_profile), ATR, stop, "127.0.0.1", fake_vpcd.port)
    )
    thread.start()
    fake_vpcd.accept()
    fake_vpcd.send(b"\x04")
    assert fake_vpcd.receive() == ATR
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert fake_vpcd.conn is not None and fake_vpcd.conn.recv(1) == b""  # card hung up


def test_vpcd_connect_retries_until_reader_listens(
    ecc_profile: CardProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on port now: connections are refused
    refused = threading.Event()
    real_connect = socket.create_connection

    def counting_connect(*args: object, **kwargs: object) -> socket.socket:
        try:
            return real_connect(*args, **kwargs)  # type: ignore[arg-type]
        except ConnectionRefusedError:
            refused.set()
            raise

    monkeypatch.setattr(vpcd.socket, "create_connection", counting_connect)
    stop = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_card(PivApplet(ecc_profile), ATR, stop, "127.0.0.1", port, connect_timeout=10)
        )
    )
    thread.start()
    assert refused.wait(timeout=5)
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(10)
    conn, _ = listener.accept()
    conn.close()
    listener.close()
    thread.join(timeout=10)
    assert result == [True]


def test_vpcd_connect_gives_up(ecc_profile: CardProfile) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    started = time.monotonic()
    ok = run_card(PivApplet(ecc_profile), ATR, threading.Event(), "127.0.0.1", port, 0.3)
    assert not ok and time.monotonic() - started < 2


def test_zero_fascn_profile_serves_a_placeholder_and_keeps_the_rest(
    ecc_profile: CardProfile,
) -> None:
    card = PivApplet(ecc_profile, quirk_profile("zero-fascn"))
    body, sw = get_data(card, 0x5FC102)
    assert sw == 0x9000
    fields = {t.tag: t.value for t in Tlv.parse_list(Tlv.unpack(0x53, body))}
    assert fields[0x30] == bytes(25)
    assert fields[0x34] == ecc_profile.guid.bytes
    assert fields[0x35] == ecc_profile.expiry.strftime("%Y%m%d").encode()
    assert fields[0x3E] == ecc_profile.chuid_signature
    plain, _ = get_data(PivApplet(ecc_profile), 0x5FC102)  # the profile itself is unchanged
    assert Fascn.decode(Tlv.parse_dict(Tlv.unpack(0x53, plain))[0x30]) == ecc_profile.fascn


def test_unknown_quirk_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown card profile"):
        quirk_profile("no-such-quirk")
    assert quirk_profile(None).name == "standard"


INSTALL_PIV = bytes.fromhex(
    "80E60C00"
    "22"  # Lc
    "05A000000308"  # load file AID
    "0BA0000003080000100001"  # module AID
    "0BA0000003080000100001"  # application AID
    "0100"  # privileges
    "02C900"  # install parameters
    "00"  # no token
)


def test_piv_after_install_profile_is_no_piv_card_until_installed(
    ecc_profile: CardProfile,
) -> None:
    card = PivApplet(ecc_profile, quirk_profile("piv-after-install"))
    card.power_on()
    select = "00A4040009A0000003080000100000"
    assert send(card, select)[1] == 0x6A82
    assert get_data(card, 0x5FC102)[1] == 0x6D00  # nothing is selected
    assert send(card, "80E60C0003020000")[1] == 0x6A80  # INSTALL of something else
    assert send(card, INSTALL_PIV)[1] == 0x9000
    assert send(card, select)[1] == 0x9000
    card.reset()  # installed for good (for this insertion)
    assert send(card, select)[1] == 0x9000 and get_data(card, 0x5FC102)[1] == 0x9000
    assert send(PivApplet(ecc_profile), INSTALL_PIV)[1] == 0x6E00  # a standard card has no GP
