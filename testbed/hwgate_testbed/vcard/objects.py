"""The PIV data objects (SP 800-73-4 part 1 §3) a profile is served as.

Built once per insert into a ``tag → response bytes`` map, so GET DATA is a
lookup. Every object but Discovery comes wrapped in tag 53; Discovery is its
own ``7E`` template.
"""

from __future__ import annotations

import gzip
import hashlib

from cryptography.hazmat.primitives import serialization

from .ber import tlv
from .profile import CardProfile, Slot
from .quirks import PLACEHOLDER_FASCN, STANDARD, Quirks

PIV_AID = bytes.fromhex("A000000308000010000100")
PIV_RID = PIV_AID[:5]

TAG_DISCOVERY = 0x7E
TAG_CHUID = 0x5FC102
TAG_CCC = 0x5FC107
TAG_KEY_HISTORY = 0x5FC10C

CERT_TAGS: dict[Slot, int] = {
    Slot.AUTHENTICATION: 0x5FC105,
    Slot.SIGNATURE: 0x5FC10A,
    Slot.KEY_MANAGEMENT: 0x5FC10B,
    Slot.CARD_AUTH: 0x5FC101,
}

PIN_POLICY_PIV_PIN = bytes([0x40, 0x10])  # PIV PIN only; PIV PIN primary
PIN_POLICY_GLOBAL_PRIMARY = bytes([0x60, 0x20])  # PIV PIN and global PIN; global primary


def chuid_content(profile: CardProfile, quirks: Quirks = STANDARD) -> bytes:
    """FASC-N, GUID, expiry: the TLVs the issuer signature covers."""
    fascn = PLACEHOLDER_FASCN if quirks.placeholder_fascn else profile.fascn.encode()
    return (
        tlv(0x30, fascn)
        + tlv(0x34, profile.guid.bytes)
        + tlv(0x35, profile.expiry.strftime("%Y%m%d").encode())
    )


def chuid(profile: CardProfile, quirks: Quirks = STANDARD) -> bytes:
    """The CHUID value (inside 53): content, 3E signature (empty when unsigned), empty FE."""
    signature = profile.chuid_signature if quirks.chuid_signed else b""
    return chuid_content(profile, quirks) + tlv(0x3E, signature) + tlv(0xFE)


def ccc(profile: CardProfile) -> bytes:
    """Card Capability Container in the common template, card id from the GUID."""
    card_id = bytes.fromhex("A0000001 16FF02".replace(" ", ""))
    card_id += hashlib.sha256(profile.guid.bytes).digest()[:14]
    body = (
        tlv(0xF0, card_id)
        + tlv(0xF1, b"\x21")
        + tlv(0xF2, b"\x21")
        + tlv(0xF3)
        + tlv(0xF4, b"\x00")
        + tlv(0xF5, b"\x10")
    )
    for tag in (0xF6, 0xF7, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE):
        body += tlv(tag)
    return body


def discovery(quirks: Quirks = STANDARD) -> bytes:
    """Discovery object (whole 7E template): PIV AID + PIN usage policy."""
    policy = PIN_POLICY_GLOBAL_PRIMARY if quirks.global_pin_primary else PIN_POLICY_PIV_PIN
    return tlv(TAG_DISCOVERY, tlv(0x4F, PIV_AID) + tlv(0x5F2F, policy))


def key_history() -> bytes:
    """No retired keys on or off card."""
    return tlv(0xC1, b"\x00") + tlv(0xC2, b"\x00") + tlv(0xFE)


def cert_container(profile: CardProfile, slot: Slot, quirks: Quirks = STANDARD) -> bytes:
    """70 certificate (gzip'd when the profile or the quirks say so), 71 CertInfo, FE."""
    der = profile.slots[slot].certificate.public_bytes(serialization.Encoding.DER)
    compress = quirks.compress_certificates
    if compress is None:
        compress = slot in profile.compressed_slots
    if compress:
        return tlv(0x70, gzip.compress(der, mtime=0)) + tlv(0x71, b"\x01") + tlv(0xFE)
    return tlv(0x70, der) + tlv(0x71, b"\x00") + tlv(0xFE)


def build_objects(profile: CardProfile, quirks: Quirks = STANDARD) -> dict[int, bytes]:
    """Every readable object as the exact GET DATA response body."""
    objects = {
        TAG_DISCOVERY: discovery(quirks),
        TAG_CHUID: tlv(0x53, chuid(profile, quirks)),
        TAG_CCC: tlv(0x53, ccc(profile)),
        TAG_KEY_HISTORY: tlv(0x53, key_history()),
    }
    if quirks.omit_discovery:
        del objects[TAG_DISCOVERY]
    if quirks.omit_chuid:
        del objects[TAG_CHUID]
    for slot in profile.slots:
        objects[CERT_TAGS[slot]] = tlv(0x53, cert_container(profile, slot, quirks))
    return objects


DEFAULT_ALGORITHMS = (0x07, 0x11)  # RSA-2048, ECC P-256


def application_property_template(algorithms: tuple[int, ...] = DEFAULT_ALGORITHMS) -> bytes:
    """APT returned by SELECT: AID, authority, label, the *algorithms* the card offers."""
    listed = b"".join(tlv(0x80, bytes([alg])) for alg in algorithms)
    return tlv(
        0x61,
        tlv(0x4F, PIV_AID)
        + tlv(0x79, tlv(0x4F, PIV_RID))
        + tlv(0x50, b"hwgate virtual PIV")
        + tlv(0xAC, listed + tlv(0x06, b"\x00")),
    )
