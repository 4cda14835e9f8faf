"""Check a card's proof of possession (PivService.Authenticate) as a relying party.

The kiosk is not trusted: it forwards the card's signature, certificate and
the origin it used, and the server recomputes the digest from its OWN origin
and the challenge it issued (the kiosk's origin is only recorded). A proof
made for another relying party therefore fails verification, which is what
origin binding is for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ObjectIdentifier

from hwgate_apps.enrollment.fascn import FascnError, decode_fascn

OID_PIV_FASCN = ObjectIdentifier("2.16.840.1.101.3.6.6")


class ProofError(Exception):
    """The proof of possession is refused; the message says why (safe to return)."""


@dataclass(frozen=True)
class Cardholder:
    """Who the verified PIV Authentication certificate names."""

    fasc_n: str
    card_uuid: str
    subject: str
    certificate: x509.Certificate


def origin_bound_digest(origin: str, challenge: bytes) -> bytes:
    """SHA-256(SHA-256(UTF-8(origin)) || SHA-256(challenge)), as PivService.Authenticate signs."""
    inner = hashlib.sha256(origin.encode()).digest() + hashlib.sha256(challenge).digest()
    return hashlib.sha256(inner).digest()


def verify_signature(cert: x509.Certificate, signature: bytes, digest: bytes) -> None:
    """ECDSA over the digest, or RSASSA-PKCS1-v1_5 with the SHA-256 DigestInfo."""
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        else:
            raise ProofError("unsupported card key type")
    except InvalidSignature:
        raise ProofError("the signature does not verify for this origin and challenge") from None


def verify_chain(cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime) -> None:
    """The card certificate is issued by the PIV issuer CA and both are valid now.

    PIV card certificates are issued directly by the card issuer's CA, so the
    path has one step; the CA must be a CA allowed to sign certificates.
    """
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise ProofError("the certificate does not chain to the PIV issuer CA") from None
    constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise ProofError("the configured PIV issuer is not a CA")
    for which, c in (("card certificate", cert), ("PIV issuer CA", issuer)):
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise ProofError(f"the {which} is not valid now")


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ProofError("the certificate has no subjectAltName") from None


def _fascn(san: x509.SubjectAlternativeName) -> str:
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_PIV_FASCN:
            value = other.value  # DER OCTET STRING: 04 len bytes
            if len(value) < 2 or value[0] != 0x04 or value[1] != len(value) - 2:
                raise ProofError("malformed FASC-N otherName")
            try:
                return decode_fascn(value[2:])
            except FascnError as err:
                raise ProofError(f"bad FASC-N: {err}") from None
    raise ProofError("the certificate carries no FASC-N")


def _uuid(san: x509.SubjectAlternativeName) -> str:
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.lower().startswith("urn:uuid:"):
            try:
                return str(uuid.UUID(uri[len("urn:uuid:") :]))
            except ValueError:
                raise ProofError("malformed urn:uuid") from None
    raise ProofError("the certificate carries no urn:uuid")


def cardholder_of(cert: x509.Certificate) -> Cardholder:
    """FASC-N, card UUID and subject from a PIV Authentication certificate."""
    san = _san(cert)
    return Cardholder(_fascn(san), _uuid(san), cert.subject.rfc4514_string(), cert)


def check_proof(
    *,
    certificate_der: bytes,
    signature: bytes,
    challenge: bytes,
    origin: str,
    issuer: x509.Certificate,
    now: dt.datetime,
) -> Cardholder:
    """The cardholder, if the proof verifies for *origin* (ours) and the chain holds."""
    try:
        cert = x509.load_der_x509_certificate(certificate_der)
    except ValueError:
        raise ProofError("the certificate is not DER X.509") from None
    verify_chain(cert, issuer, now)
    verify_signature(cert, signature, origin_bound_digest(origin, challenge))
    return cardholder_of(cert)
