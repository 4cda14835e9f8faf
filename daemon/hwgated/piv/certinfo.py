"""The face of an X.509 certificate read from a card, for events and GetCardInfo."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hwgated.piv.errors import PivParseError


class CertificateParseError(PivParseError):
    """The card's certificate object does not hold a parseable X.509 certificate."""


@dataclass(frozen=True)
class CertSummary:
    subject: str
    issuer: str
    serial_number: bytes  # the DER INTEGER's content octets (two's complement)
    not_before: datetime.datetime
    not_after: datetime.datetime
    key_algorithm: str  # "RSA_2048", "EC_P256", ... ("" when unknown)
    sha256_fingerprint: bytes


_CURVES = {"secp256r1": "EC_P256", "secp384r1": "EC_P384"}


def key_algorithm_name(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA_{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVES.get(key.curve.name, "")
    return ""


def integer_octets(value: int) -> bytes:
    """The content octets of a DER INTEGER: minimal big-endian two's complement
    (a serial with its high bit set keeps the leading 00, as in the certificate)."""
    magnitude = value if value >= 0 else ~value
    return value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def summarize(der: bytes) -> CertSummary:
    """Parse *der*; raises CertificateParseError on anything that is not a certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
        return CertSummary(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            serial_number=integer_octets(cert.serial_number),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            key_algorithm=key_algorithm_name(cert),
            sha256_fingerprint=hashlib.sha256(der).digest(),
        )
    except (ValueError, TypeError) as exc:
        raise CertificateParseError(f"not an X.509 certificate: {exc}") from None
