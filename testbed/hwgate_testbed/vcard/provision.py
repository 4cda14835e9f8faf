"""Make a new virtual PIV card: identity, four key pairs, certificates from the test CA.

Every key is generated here, off-card, and loaded into the card's profile: for
the Key Management (9D) key that is what key-recovery issuers do, and the test
bed escrows it (hwgate_testbed.escrow, outside this package: the card knows
nothing of the HSM).

Each card gets its own FASC-N credential number, GUID and subject names taken
from *name*, so tests can tell two cards apart by what they read from them.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .chuid_signature import sign_chuid
from .fascn import Fascn
from .objects import chuid_content
from .piv_ca import PivCa
from .profile import CardProfile, KeyType, PrivateKey, Slot, SlotCredential

OID_PIV_FASCN = ObjectIdentifier("2.16.840.1.101.3.6.6")
OID_PIV_CARD_AUTH_EKU = ObjectIdentifier("2.16.840.1.101.3.6.8")
OID_POLICY_COMMON_AUTHENTICATION = ObjectIdentifier("2.16.840.1.101.3.2.1.3.13")
OID_POLICY_COMMON_HARDWARE = ObjectIdentifier("2.16.840.1.101.3.2.1.3.7")
OID_POLICY_COMMON_CARD_AUTH = ObjectIdentifier("2.16.840.1.101.3.2.1.3.17")

CARD_LIFETIME = dt.timedelta(days=5 * 365)
CERT_BACKDATE = dt.timedelta(minutes=5)  # tolerate a verifier's clock a little behind
AGENCY_CODE = "9999"  # non-federal issuer
SYSTEM_CODE = "0042"
EMAIL_DOMAIN = "hwgate.example"

_SLOT_LABELS = {
    Slot.AUTHENTICATION: "",
    Slot.SIGNATURE: " (Digital Signature)",
    Slot.KEY_MANAGEMENT: " (Key Management)",
    Slot.CARD_AUTH: " (Card Authentication)",
}
_POLICIES = {
    Slot.AUTHENTICATION: OID_POLICY_COMMON_AUTHENTICATION,
    Slot.SIGNATURE: OID_POLICY_COMMON_HARDWARE,
    Slot.KEY_MANAGEMENT: OID_POLICY_COMMON_HARDWARE,
    Slot.CARD_AUTH: OID_POLICY_COMMON_CARD_AUTH,
}
COMPRESSED_SLOTS = frozenset({Slot.KEY_MANAGEMENT})


def provision_card(
    card_dir: Path, name: str, key_type: str, ca: PivCa, email: str | None = None
) -> CardProfile:
    """Create a card profile for cardholder *name* and save it into *card_dir*.

    *email*: an rfc822Name in the PIV Authentication and Signature certificates'
    SAN (the enrollment server's notices go there); none by default.
    """
    if key_type not in ("rsa", "ecc"):
        raise ValueError(f"key_type must be 'rsa' or 'ecc', not {key_type!r}")
    kt: KeyType = "rsa" if key_type == "rsa" else "ecc"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expiry = (now + CARD_LIFETIME).date()
    profile = CardProfile(
        name=name,
        key_type=kt,
        fascn=_new_fascn(),
        guid=uuid.uuid4(),
        expiry=expiry,
        compressed_slots=COMPRESSED_SLOTS,
    )
    not_after = min(
        dt.datetime.combine(expiry, dt.time(), dt.UTC), ca.certificate.not_valid_after_utc
    )
    for slot in Slot:
        key = _new_key(kt)
        cert = issue_certificate(
            profile, slot, key, ca, now - CERT_BACKDATE, not_after, email=email
        )
        profile.slots[slot] = SlotCredential(key, cert)
    profile.chuid_signature = sign_chuid(chuid_content(profile), ca, now)
    profile.save(card_dir)
    return profile


def _new_fascn() -> Fascn:
    return Fascn(
        agency_code=AGENCY_CODE,
        system_code=SYSTEM_CODE,
        credential_number=f"{secrets.randbelow(10**6):06d}",
        cs="0",
        ici="1",
        pi=f"{secrets.randbelow(10**10):010d}",
        oc="3",
        oi=AGENCY_CODE,
        poa="1",
    )


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _subject(profile: CardProfile, slot: Slot) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwgate test bed"),
            x509.NameAttribute(NameOID.COMMON_NAME, profile.name + _SLOT_LABELS[slot]),
        ]
    )


def _key_usage(slot: Slot, key: PrivateKey) -> x509.KeyUsage:
    is_km = slot is Slot.KEY_MANAGEMENT
    return x509.KeyUsage(
        digital_signature=not is_km,
        content_commitment=slot is Slot.SIGNATURE,
        key_encipherment=is_km and isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=is_km and isinstance(key, ec.EllipticCurvePrivateKey),
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def email_address(name: str) -> str:
    """The cardholder's test e-mail address: "Erin Ecc" -> erin.ecc@hwgate.example
    (RFC 2606 reserves .example)."""
    local = ".".join("".join(c for c in word if c.isalnum()) for word in name.lower().split())
    return f"{local or 'cardholder'}@{EMAIL_DOMAIN}"


def _san(profile: CardProfile, slot: Slot, email: str | None) -> x509.SubjectAlternativeName:
    """FASC-N otherName (PIV Auth and Card Auth only), the cardholder's e-mail address
    (Digital Signature and Key Management: the S/MIME certificates, as PIV issuers put
    rfc822Name there; *email* or one made from the name), the card UUID URI, and
    *email* in PIV Authentication too when one is given (the enrollment server's
    notices go there)."""
    names: list[x509.GeneralName] = []
    if slot in (Slot.AUTHENTICATION, Slot.CARD_AUTH):
        fascn = profile.fascn.encode()
        names.append(x509.OtherName(OID_PIV_FASCN, b"\x04" + bytes([len(fascn)]) + fascn))
    if slot in (Slot.SIGNATURE, Slot.KEY_MANAGEMENT):
        names.append(x509.RFC822Name(email or email_address(profile.name)))
    names.append(x509.UniformResourceIdentifier(profile.guid.urn))
    if email and slot == Slot.AUTHENTICATION:
        names.append(x509.RFC822Name(email))
    return x509.SubjectAlternativeName(names)


def issue_certificate(
    profile: CardProfile,
    slot: Slot,
    key: PrivateKey,
    ca: PivCa,
    not_before: dt.datetime,
    not_after: dt.datetime,
    email: str | None = None,
) -> x509.Certificate:
    """The slot's certificate for *key* (subject, SAN, policies as a PIV issuer sets them)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(profile, slot))
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(slot, key), critical=True)
        .add_extension(_san(profile, slot, email), critical=False)
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(_POLICIES[slot], None)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    if slot is Slot.CARD_AUTH:
        builder = builder.add_extension(x509.ExtendedKeyUsage([OID_PIV_CARD_AUTH_EKU]), False)
    elif slot is Slot.AUTHENTICATION:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
        )
    return builder.sign(ca.key, hashes.SHA256())
