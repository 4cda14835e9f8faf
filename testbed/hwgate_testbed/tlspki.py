"""The test mTLS PKI: a CA, the daemon's server certificate and one client
certificate per role (kiosk, enrollment, admin).

Client certificates carry both a SAN URI (spiffe://hwgate.test/NAME) and CN NAME
so the daemon's identity mapping can be tested either way. Existing files are
kept (idempotent); a leaf is re-issued only if it is missing, not from the CA,
or not in the current profile (below).

Profile (RFC 5280, strict): the CA has basicConstraints CA:TRUE critical,
keyUsage keyCertSign + cRLSign critical, a subjectKeyIdentifier; every leaf has
basicConstraints CA:FALSE critical, keyUsage digitalSignature critical (an EC
key never asserts keyEncipherment, RFC 5480 §3), its own subjectKeyIdentifier
and an authorityKeyIdentifier equal to the CA's. Python 3.13's default context
(VERIFY_X509_STRICT) rejects a leaf without the AKI
(tests/security/test_strict_x509.py checks every certificate the project makes).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hwgate_testbed.fsutil import write_private
from hwgate_testbed.paths import PKI_CLIENTS, TestbedPaths

SPIFFE_DOMAIN = "hwgate.test"
_VALIDITY = datetime.timedelta(days=825)


def spiffe_uri(name: str) -> str:
    """The SAN URI of the client certificate for role `name`."""
    return f"spiffe://{SPIFFE_DOMAIN}/{name}"


@dataclass(frozen=True)
class TlsPki:
    """Absolute paths of the PKI files (certificates PEM, keys PEM PKCS#8, 0600)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]  # role -> (cert, key)


def pki_paths(paths: TestbedPaths) -> TlsPki:
    return TlsPki(
        ca_cert=paths.pki_cert("ca"),
        ca_key=paths.pki_key("ca"),
        server_cert=paths.pki_cert("server"),
        server_key=paths.pki_key("server"),
        clients={n: (paths.pki_cert(n), paths.pki_key(n)) for n in PKI_CLIENTS},
    )


def ensure_pki(paths: TestbedPaths) -> TlsPki:
    """Create whatever part of the PKI is missing; return its paths."""
    pki = pki_paths(paths)
    ca_cert, ca_key = _ensure_ca(pki.ca_cert, pki.ca_key)
    server_ext = [
        x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
    ]
    _ensure_leaf(pki.server_cert, pki.server_key, "localhost", server_ext, ca_cert, ca_key)
    for name, (cert, key) in pki.clients.items():
        ext = [
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_uri(name))]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
        ]
        _ensure_leaf(cert, key, name, ext, ca_cert, ca_key)
    return pki


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwgate test bed"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])  # fmt: skip


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)


def _load(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: not an EC key")
    return cert, key


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _ensure_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if cert_path.exists() and key_path.exists():
        return _load(cert_path, key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("hwgate test mTLS CA")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _issued_by(cert_path: Path, ca: x509.Certificate) -> bool:
    """Whether the leaf at `cert_path` comes from `ca` and has the current profile
    (a bed made before the profile gained the SKI is brought up to date)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (FileNotFoundError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return True


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI naming the CA's own SKI (RFC 5280 §4.2.1.1: the two must match)."""
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ensure_leaf(
    cert_path: Path,
    key_path: Path,
    cn: str,
    extensions: list[x509.ExtensionType],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> None:
    if key_path.exists() and _issued_by(cert_path, ca_cert):
        return
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(cn), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(_authority_key_id(ca_cert), False)
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    _write_key(key_path, key)
    cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM))  # fmt: skip
