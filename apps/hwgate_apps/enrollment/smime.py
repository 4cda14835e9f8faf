"""Derived S/MIME credentials: the card's e-mail certificates in, a signing certificate out.

Pure logic (no HTTP, no database, no hwgate): which card certificates the
server accepts from the kiosk, what the phone's signing CSR must be, the
signing certificate's profile, and the digest the phone signs with its derived
PIV Authentication key to ask for all this.

Policy (looked up, not guessed):

- NIST SP 800-157r1 (usnistgov/800-157r1@31d4216, _sp800-157/A_keys.md,
  Appendix A): the card's digital signature key cannot be copied, so the
  derived keystore gets a NEW signing key and certificate, and "a digital
  signature certificate for a derived PIV credential keystore may be issued
  under one of these policies": id-fpki-common-policy, id-fpki-common-hardware
  or id-fpki-common-High. There is no derived-PIV-specific signature policy
  (the derived OIDs .40/.41 are for PIV *Authentication* only).
- X.509 Certificate Policy for the U.S. Federal PKI Common Policy Framework
  v2.6 (2023-11-03) §1.2 (RS-Credentive/fpki-policy-tokenizer,
  tokenized_markdown/FCPCACPv2.6.md): "Digital signature certificate with the
  private key not on a PIV credential: id-fpki-common-policy,
  id-fpki-common-hardware, or id-fpki-common-high"; the OIDs are
  {2 16 840 1 101 3 2 1 3 6}, {... 3 7} and {... 3 16}.
- So: id-fpki-common-policy (.6) for a software key (the phone simulator's,
  FIPS 140 level 1), id-fpki-common-hardware (.7) when the phone keeps the
  key in hardware (``smime_policy_oid`` in the config).
- Profile: FPKI Common End Entity Signature Certificate Profile (GSA/fpki-guides,
  _profiles/07_common_end_entity_sign.md, worksheet 7): KU digitalSignature +
  nonRepudiation, critical; SKI, AKI; EKU optional, non-critical, and "the 3
  values listed ... should be included for signing purposes":
  id-kp-emailProtection, MSFT Document Signing, Adobe Certified Document
  Signing. AIA and CRL DP are mandatory there; they are added when configured
  (the reference setup publishes neither, as for the PIV-Auth derived cert).
- The e-mail: RFC 8550 §3 puts it in the subjectAltName rfc822Name. It comes
  only from the cardholder's card certificates (9C Digital Signature and 9D
  Key Management, where PIV issuers put it), verified to chain to the PIV
  issuer and to name the same card (its urn:uuid); never from the CSR.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from hwgate_apps.enrollment.issuer import (
    CsrError,
    DerivedProfile,
    build_end_entity_certificate,
    check_csr,
    signature_key_usage,
)
from hwgate_apps.enrollment.proof import ProofError, verify_chain

POLICY_COMMON_POLICY = "2.16.840.1.101.3.2.1.3.6"  # id-fpki-common-policy (software keys)
POLICY_COMMON_HARDWARE = "2.16.840.1.101.3.2.1.3.7"  # id-fpki-common-hardware
POLICY_COMMON_HIGH = "2.16.840.1.101.3.2.1.3.16"  # id-fpki-common-High
SIGNATURE_POLICIES = (POLICY_COMMON_POLICY, POLICY_COMMON_HARDWARE, POLICY_COMMON_HIGH)
EKU_MS_DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.4.1.311.10.3.12")
EKU_ADOBE_DOCUMENT_SIGNING = ObjectIdentifier("1.2.840.113583.1.1.5")
SIGNING_EKUS = (
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    EKU_MS_DOCUMENT_SIGNING,
    EKU_ADOBE_DOCUMENT_SIGNING,
)
SLOT_SIGNATURE, SLOT_KEY_MANAGEMENT = "9c", "9d"
CARD_SLOTS = (SLOT_SIGNATURE, SLOT_KEY_MANAGEMENT)
MAX_CERT_BYTES = 8192
_DOMAIN = b"hwgate-apps/smime-request/v1\x00"


class CardCertificateError(ProofError):
    """A card certificate the kiosk forwarded is refused (message safe to return)."""


@dataclass(frozen=True)
class CardCertificates:
    """The cardholder's e-mail certificates as read from the card (DER), and their e-mails."""

    signature: bytes | None
    key_management: bytes | None
    emails: tuple[str, ...]

    @property
    def km_certificate(self) -> x509.Certificate | None:
        if self.key_management is None:
            return None
        return x509.load_der_x509_certificate(self.key_management)


def _san_values(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _card_uuid_uris(cert: x509.Certificate) -> set[str]:
    san = _san_values(cert)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san else []
    return {u.lower() for u in uris if u.lower().startswith("urn:uuid:")}


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _slot_fits(slot: str, cert: x509.Certificate) -> bool:
    """9C must sign; 9D must encrypt (key transport or agreement)."""
    ku = _key_usage(cert)
    if ku is None:
        return False
    if slot == SLOT_SIGNATURE:
        return ku.digital_signature or ku.content_commitment
    return ku.key_encipherment or ku.key_agreement


def check_card_certificates(
    given: Any, piv_auth: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
) -> CardCertificates:
    """The kiosk's ``card_certificates`` ({"9c": DER, "9d": DER}, bytes already decoded).

    Each must be issued by the PIV issuer CA, valid now, fit its slot's key usage
    and carry the same card UUID (urn:uuid) as the verified PIV Authentication
    certificate: so an untrusted kiosk can forward only this card's certificates.
    """
    if not isinstance(given, dict) or not set(given) <= set(CARD_SLOTS):
        raise CardCertificateError(f"card_certificates: an object with keys {CARD_SLOTS}")
    card_uuids = _card_uuid_uris(piv_auth)
    found: dict[str, bytes] = {}
    emails: list[str] = []
    for slot in CARD_SLOTS:
        der = given.get(slot)
        if der is None:
            continue
        if not isinstance(der, bytes) or len(der) > MAX_CERT_BYTES:
            raise CardCertificateError(f"the {slot} certificate is not DER of a sane size")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise CardCertificateError(f"the {slot} certificate is not DER X.509") from None
        verify_chain(cert, issuer, now)
        if not card_uuids or not card_uuids & _card_uuid_uris(cert):
            raise CardCertificateError(f"the {slot} certificate is not of the same card")
        if not _slot_fits(slot, cert):
            raise CardCertificateError(f"the {slot} certificate's key usage does not fit")
        found[slot] = der
        san = _san_values(cert)
        for address in san.get_values_for_type(x509.RFC822Name) if san else []:
            if address.lower() not in (e.lower() for e in emails):
                emails.append(address)
    return CardCertificates(found.get(SLOT_SIGNATURE), found.get(SLOT_KEY_MANAGEMENT),
                            tuple(emails))  # fmt: skip


def _csr_emails(csr: x509.CertificateSigningRequest) -> list[str]:
    """Every e-mail address the CSR asks for: SAN rfc822Name and subject emailAddress."""
    asked = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return asked
    return asked + list(san.get_values_for_type(x509.RFC822Name))


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def check_signing_csr(
    pem: str, emails: tuple[str, ...], other_keys: list[x509.Certificate]
) -> x509.CertificateSigningRequest:
    """The phone's signing CSR: proof of possession (self-signature), P-256 or RSA >= 2048
    (:func:`.issuer.check_csr`), a NEW key (not the derived authentication key nor the
    card's), and no e-mail address the card does not carry.

    The CSR's subject and extensions are otherwise ignored: the certificate says
    what the card says. Asking for another address is refused rather than silently
    dropped, so a confused or malicious client learns it at once.
    """
    csr = check_csr(pem)
    own = {e.lower() for e in emails}
    foreign = [e for e in _csr_emails(csr) if e.lower() not in own]
    if foreign:
        raise CsrError("the CSR asks for an e-mail address the card's certificates do not carry")
    key = _public_der(csr.public_key())
    if any(key == _public_der(c.public_key()) for c in other_keys):
        raise CsrError("the signing key must be a new key, not one already certified")
    return csr


@dataclass(frozen=True)
class SmimeProfile:
    """What the derived S/MIME signing certificate says, and for how long at most."""

    subject: x509.Name
    emails: tuple[str, ...]
    piv_auth_not_after: dt.datetime
    policy_oid: str
    validity: dt.timedelta
    ca_issuers_url: str = ""
    ocsp_url: str = ""
    crl_url: str = ""


def _signing_key_usage() -> x509.KeyUsage:
    return signature_key_usage(non_repudiation=True)


def build_signing_certificate(
    csr: x509.CertificateSigningRequest,
    profile: SmimeProfile,
    ca_cert: x509.Certificate,
    ca_key: Any,
    now: dt.datetime,
) -> x509.Certificate:
    """Issue the derived S/MIME signing certificate; *ca_key* signs (in the HSM)."""
    if profile.policy_oid not in SIGNATURE_POLICIES:
        raise ValueError(f"{profile.policy_oid} is not a Common Policy signature policy")
    if not profile.emails:
        raise CsrError("the card's certificates carry no e-mail address")
    limits = DerivedProfile(
        subject=profile.subject, card_uuid="", piv_auth_not_after=profile.piv_auth_not_after,
        policy_oid=profile.policy_oid, validity=profile.validity,
        ca_issuers_url=profile.ca_issuers_url, ocsp_url=profile.ocsp_url,
        crl_url=profile.crl_url,
    )  # fmt: skip
    return build_end_entity_certificate(
        csr, limits, ca_cert, ca_key, now,
        key_usage=_signing_key_usage(),
        names=[x509.RFC822Name(e) for e in profile.emails],
        ekus=list(SIGNING_EKUS),
    )  # fmt: skip


def request_digest(origin: str, challenge: bytes, csr_der: bytes, peer_key: bytes) -> bytes:
    """What the phone signs (ECDSA / RSA PKCS#1 v1.5 over this SHA-256, prehashed) with
    its derived PIV Authentication key to ask for S/MIME credentials:

        SHA-256(domain || SHA-256(origin) || SHA-256(challenge)
                || SHA-256(CSR DER) || SHA-256(peer public key DER, or empty))

    Bound to this server, this single-use challenge, this CSR and this ephemeral
    key: a captured request cannot be replayed, nor its CSR or transport key swapped.
    """
    parts = (origin.encode(), challenge, csr_der, peer_key)
    return hashlib.sha256(_DOMAIN + b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
