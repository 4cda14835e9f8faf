"""The PIV test issuer: one self-signed CA that signs every virtual card's certificates.

Kept on disk (``piv-ca.pem`` + ``piv-ca.key``, the key mode 0600) and reused, so
cards provisioned at different times chain to the same root and a relying
party's trust store needs only this one certificate.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_CERT_FILE = "piv-ca.pem"
CA_KEY_FILE = "piv-ca.key"
CA_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class PivCa:
    """The issuer's certificate and its signing key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject


def ensure_piv_ca(pki_dir: Path) -> PivCa:
    """Load the PIV test CA from *pki_dir*, creating it first if it is not there."""
    cert_path, key_path = pki_dir / CA_CERT_FILE, pki_dir / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        return _load(cert_path, key_path)
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = _create()
    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    return ca


def _load(cert_path: Path, key_path: Path) -> PivCa:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: expected an EC private key")
    return PivCa(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)


def _create() -> PivCa:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwgate test bed"),
            x509.NameAttribute(NameOID.COMMON_NAME, "hwgate PIV Test CA"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return PivCa(cert, key)
