"""Key material a quirk profile needs beyond what the card was provisioned with.

A P-384 PIV Authentication key, RSA keys on an ECC card or an expired
certificate are *content*, not a way of serving it, so they cannot be made up
by the card process (it holds no CA key). :func:`ensure_material` issues them
once per card and profile, with the same test CA as the card's own
certificates, into ``CARD_DIR/quirks/PROFILE/``; :func:`with_material` lays
them over the provisioned slots when the card is inserted with that profile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .piv_ca import PivCa
from .profile import CardProfile, PrivateKey, Slot, SlotCredential, _key_pem, _write_private
from .provision import CERT_BACKDATE, issue_certificate
from .quirks import KEY_ECC_P384, KEY_RSA_2048, Quirks

MATERIAL_DIR = "quirks"
COMPLETE = "complete"  # written last: a half-written directory is made again
EXPIRED_FOR = dt.timedelta(days=1)
EXPIRED_VALIDITY = dt.timedelta(days=365)


class MaterialMissing(RuntimeError):
    """The profile needs material nobody issued for this card yet."""


def material_dir(card_dir: Path, quirks: Quirks) -> Path:
    return card_dir / MATERIAL_DIR / quirks.name


def ensure_material(card_dir: Path, quirks: Quirks, ca: PivCa) -> None:
    """Issue what *quirks* needs for the card in *card_dir*, unless already there."""
    target = material_dir(card_dir, quirks)
    if not quirks.needs_material or (target / COMPLETE).is_file():
        return
    profile = CardProfile.load(card_dir)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued: dict[Slot, SlotCredential] = {}
    for slot, kind in quirks.slot_keys:
        current = profile.slots[slot]
        if _key_kind(current.key) != kind:
            key = _new_key(kind)
            cert = issue_certificate(
                profile, slot, key, ca, now - CERT_BACKDATE, current.certificate.not_valid_after_utc
            )
            issued[slot] = SlotCredential(key, cert)
    for slot in quirks.expired_slots:
        key = issued.get(slot, profile.slots[slot]).key
        not_after = now - EXPIRED_FOR
        cert = issue_certificate(profile, slot, key, ca, not_after - EXPIRED_VALIDITY, not_after)
        issued[slot] = SlotCredential(key, cert)
    target.mkdir(parents=True, exist_ok=True)
    for slot, cred in issued.items():
        _write_private(target / f"slot-{slot:02x}.key.pem", _key_pem(cred.key))
        cert_pem = cred.certificate.public_bytes(serialization.Encoding.PEM)
        (target / f"slot-{slot:02x}.cert.pem").write_bytes(cert_pem)
    (target / COMPLETE).write_text("\n".join(f"{slot:02x}" for slot in issued) + "\n")


def with_material(profile: CardProfile, card_dir: Path, quirks: Quirks) -> CardProfile:
    """*profile* with the slots *quirks* replaces; MaterialMissing if never issued."""
    if not quirks.needs_material:
        return profile
    target = material_dir(card_dir, quirks)
    try:
        listed = (target / COMPLETE).read_text().split()
    except FileNotFoundError:
        raise MaterialMissing(
            f"profile {quirks.name!r} needs keys issued for this card first "
            f"(hwgate-testbed insert --profile {quirks.name} does that)"
        ) from None
    slots = dict(profile.slots)
    for hex_slot in listed:
        slot = Slot(int(hex_slot, 16))
        key = serialization.load_pem_private_key(
            (target / f"slot-{slot:02x}.key.pem").read_bytes(), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"unsupported key type in {target}")
        cert = x509.load_pem_x509_certificate((target / f"slot-{slot:02x}.cert.pem").read_bytes())
        slots[slot] = SlotCredential(key, cert)
    return dataclasses.replace(profile, slots=slots)


def _key_kind(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa-{key.key_size}"
    return "ecc-p384" if isinstance(key.curve, ec.SECP384R1) else "ecc-p256"


def _new_key(kind: str) -> PrivateKey:
    if kind == KEY_RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == KEY_ECC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key kind {kind!r}")
