"""TLS certificates for the reference apps, from the test bed's mTLS CA.

Test bed only: it signs with DIR/pki/ca.key so that clients already trusting
DIR/pki/ca.pem (the phone, the kiosk) accept the enrollment server, and the
enrollment server (``client_ca = DIR/pki/ca.pem``) knows the kiosks by their
client certificates (:func:`kiosk_certificate`, SAN URI
``spiffe://hwgate.test/kiosk/NAME``). A real deployment configures its own
certificates instead.

RFC 5280-strict, as Python 3.13's default context demands (VERIFY_X509_STRICT:
without an authorityKeyIdentifier every client fails with "Missing Authority
Key Identifier"): basicConstraints CA:FALSE and keyUsage digitalSignature, both
critical, SKI, and an AKI equal to the CA's SKI. A certificate from before this
profile is replaced.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DIGITAL_SIGNATURE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _current(cert_path: Path, ca_cert: x509.Certificate) -> bool:
    """Whether *cert_path* is a certificate from *ca_cert* in this profile (it has an AKI)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (FileNotFoundError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return True


SPIFFE_KIOSKS = "spiffe://hwgate.test/kiosk/"


def web_certificate(pki: Path, out: Path) -> tuple[Path, Path]:
    """(cert, key) for localhost / 127.0.0.1 in *out*, issued by pki/ca.pem; reused if there."""
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    return _issue(pki, out / "web.pem", out / "web.key", "hwgate apps", san,
                  ExtendedKeyUsageOID.SERVER_AUTH)  # fmt: skip


def kiosk_certificate(pki: Path, out: Path, name: str) -> tuple[Path, Path]:
    """(cert, key) in *out* for kiosk *name*: a client certificate with SAN URI
    ``spiffe://hwgate.test/kiosk/NAME`` and CN ``kiosk NAME``; reused if there."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SPIFFE_KIOSKS + name)])
    return _issue(pki, out / f"kiosk-{name}.pem", out / f"kiosk-{name}.key", f"kiosk {name}",
                  san, ExtendedKeyUsageOID.CLIENT_AUTH)  # fmt: skip


def _issue(
    pki: Path,
    cert_path: Path,
    key_path: Path,
    cn: str,
    san: x509.SubjectAlternativeName,
    purpose: x509.ObjectIdentifier,
) -> tuple[Path, Path]:
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    if key_path.exists() and _current(cert_path, ca_cert):
        return cert_path, key_path
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_DIGITAL_SIGNATURE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))  # fmt: skip
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
