"""Every certificate the project makes passes a strict RFC 5280 verifier.

Python 3.13's ``ssl.create_default_context()`` sets ``VERIFY_X509_STRICT``
(Debian 13): a CA-issued certificate without an authorityKeyIdentifier fails
with ``Missing Authority Key Identifier``, which is how the reference apps'
development certificate broke every enrollment client there. Here the flag is
set explicitly, so Python 3.11 (Debian 12) checks the same, and
``openssl verify -x509_strict`` checks the certificates TLS cannot carry.

The certificates: the test mTLS PKI (CA, server, one client per role:
testbed tlspki), the apps' HTTPS development certificate (hwgate_apps.devpki),
the PIV test CA and a card's four slot certificates (RSA and ECC), the HSM's
self-signed issuing CA and a derived PIV Authentication certificate it signs
through hwgated (hwgate_apps.enrollment.issuer). The project makes no CRL.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hsm_service_support import HsmDaemon

from hwgate.client import Client
from hwgate_apps.devpki import kiosk_certificate, web_certificate
from hwgate_apps.enrollment.config import POLICY_DERIVED_PIV_AUTH
from hwgate_apps.enrollment.issuer import DerivedProfile, build_derived_certificate, check_csr
from hwgate_testbed import tlspki
from hwgate_testbed.paths import PKI_CLIENTS
from hwgate_testbed.vcard.piv_ca import ensure_piv_ca
from hwgate_testbed.vcard.profile import Slot
from hwgate_testbed.vcard.provision import provision_card

pytestmark = pytest.mark.testbed

OPENSSL = shutil.which("openssl")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def strict_context(side: int, trust: Path) -> ssl.SSLContext:
    """A context that verifies the peer against *trust* with VERIFY_X509_STRICT."""
    ctx = ssl.SSLContext(side)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(trust))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    """One TLS handshake over a socketpair; raises the side's SSL error if either fails."""
    left, right = socket.socketpair()
    left.settimeout(15)
    right.settimeout(15)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname="localhost") as tls:
            tls.sendall(b"x")
    finally:
        thread.join(15)
        left.close()
        right.close()
    if errors:
        raise errors[0]


def server_side(cert: Path, key: Path, client_trust: Path | None = None) -> ssl.SSLContext:
    if client_trust is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    else:
        ctx = strict_context(ssl.PROTOCOL_TLS_SERVER, client_trust)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def client_side(trust: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = strict_context(ssl.PROTOCOL_TLS_CLIENT, trust)
    ctx.check_hostname = True
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def openssl_verify(trust: Path, cert: Path) -> None:
    assert OPENSSL, "openssl is a dependency of the suite (Debian openssl)"
    argv = [OPENSSL, "verify", "-x509_strict", "-CAfile", str(trust), str(cert)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0 or ": OK" not in done.stdout:
        # Raised, not asserted: pytest shortens a long assertion message in the middle
        # (a long tmp path cut "Authority Key Identifier" in half under xdist).
        raise AssertionError(
            f"openssl verify -x509_strict refused {cert.name} (exit {done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:  # type: ignore[type-arg]
    return cert.extensions.get_extension_for_class(kind)


def check_profile(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """RFC 5280's rules the strict verifiers do not all enforce, with clear messages."""
    name = cert.subject.rfc4514_string()
    assert cert.version is x509.Version.v3, name
    ski = _ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical, f"{name}: SKI must be non-critical (§4.2.1.2)"
    bc = _ext(cert, x509.BasicConstraints)
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical, f"{name}: keyUsage should be critical (§4.2.1.3)"
    if bc.value.ca:
        assert bc.critical, f"{name}: a CA's basicConstraints must be critical (§4.2.1.9)"
        assert ku.value.key_cert_sign, f"{name}: a CA's keyUsage needs keyCertSign"
    else:
        assert not ku.value.key_cert_sign, f"{name}: keyCertSign on a non-CA (§4.2.1.9)"
        assert bc.critical, f"{name}: basicConstraints marked critical in this profile"
    if isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        assert not ku.value.key_encipherment and not ku.value.data_encipherment, (
            f"{name}: an EC key cannot encipher (RFC 5480 §3)"
        )
    if cert.issuer != cert.subject:
        aki = _ext(cert, x509.AuthorityKeyIdentifier)
        assert not aki.critical, f"{name}: AKI must be non-critical (§4.2.1.1)"
        issuer_ski = _ext(issuer, x509.SubjectKeyIdentifier).value.digest
        assert aki.value.key_identifier == issuer_ski, f"{name}: AKI is not the issuer's SKI"
    cert.verify_directly_issued_by(issuer)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("strict-x509")


def test_the_mtls_pki_and_the_apps_web_certificate(testbed: object, work: Path) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    pki = tlspki.ensure_pki(paths)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    web_cert, web_key = web_certificate(paths.pki, work / "web")
    kiosk_cert, kiosk_key = kiosk_certificate(paths.pki, work / "web", "k1")
    leaves = {"server": pki.server_cert, "web": web_cert, "apps kiosk": kiosk_cert}
    leaves.update({role: pki.clients[role][0] for role in PKI_CLIENTS})
    check_profile(ca, ca)
    openssl_verify(pki.ca_cert, pki.ca_cert)
    for what, cert in leaves.items():
        check_profile(x509.load_pem_x509_certificate(cert.read_bytes()), ca)
        openssl_verify(pki.ca_cert, cert)
        assert what  # named for the assertion messages above
    # The handshakes the daemon's and the apps' clients make, verified strictly.
    handshake(server_side(web_cert, web_key), client_side(pki.ca_cert))
    # The kiosk's client certificate, as the enrollment server checks it.
    handshake(server_side(web_cert, web_key, client_trust=pki.ca_cert),
              client_side(pki.ca_cert, kiosk_cert, kiosk_key))  # fmt: skip
    for role in PKI_CLIENTS:
        cert, key = pki.clients[role]
        handshake(
            server_side(pki.server_cert, pki.server_key, client_trust=pki.ca_cert),
            client_side(pki.ca_cert, cert, key),
        )


def test_a_certificate_without_aki_is_refused_by_the_strict_checks(work: Path) -> None:
    """The verifiers above do fail on what Debian 13 refused (so they prove something)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-AKI CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    trust = _write(work, "noaki-ca.pem", _pem(ca))
    cert = _write(work, "noaki.pem", _pem(leaf))
    with pytest.raises(ssl.SSLCertVerificationError, match="Authority Key Identifier"):
        handshake(server_side(cert, _write(work, "noaki.key", _key_pem(key))), client_side(trust))
    with pytest.raises(AssertionError, match="Authority Key Identifier"):
        openssl_verify(trust, cert)


@pytest.mark.parametrize("key_type", ["rsa", "ecc"])
def test_the_piv_test_ca_and_every_card_certificate(
    testbed: object, work: Path, key_type: str
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    ca = ensure_piv_ca(paths.pki)
    trust = _write(work, "piv-ca.pem", _pem(ca.certificate))
    card = provision_card(work / f"card-{key_type}", f"strict {key_type}", key_type, ca)
    check_profile(ca.certificate, ca.certificate)
    openssl_verify(trust, trust)
    for slot, credential in card.slots.items():
        check_profile(credential.certificate, ca.certificate)
        openssl_verify(
            trust, _write(work, f"{key_type}-{slot.name}.pem", _pem(credential.certificate))
        )
    # A relying party checking the PIV Authentication certificate in a TLS client handshake.
    auth = card.slots[Slot.AUTHENTICATION]
    pki = tlspki.ensure_pki(paths)
    handshake(
        server_side(pki.server_cert, pki.server_key, client_trust=trust),
        client_side(
            pki.ca_cert,
            _write(work, f"{key_type}-auth.pem", _pem(auth.certificate)),
            _write(work, f"{key_type}-auth.key", _key_pem(auth.key)),
        ),
    )


def test_the_issuing_ca_and_a_derived_certificate_it_signs(
    testbed: object, hsmd: HsmDaemon, work: Path
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    issuing = paths.pki_cert("issuing-ca")
    ca = x509.load_pem_x509_certificate(issuing.read_bytes())
    check_profile(ca, ca)
    openssl_verify(issuing, issuing)
    phone_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strict derived")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        phone_key, hashes.SHA256())  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    profile = DerivedProfile(
        subject=subject,
        card_uuid=str(uuid.uuid4()),
        piv_auth_not_after=now + dt.timedelta(days=365),
        policy_oid=POLICY_DERIVED_PIV_AUTH,
        validity=dt.timedelta(days=30),
    )
    client = Client(hsmd.channel("admin"))
    try:
        ca_key = client.hsm_key("issuing-ca")
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        cert = build_derived_certificate(
            check_csr(csr.public_bytes(serialization.Encoding.PEM).decode()),
            profile, ca, ca_key, now,
        )  # fmt: skip
    finally:
        client.close()
    check_profile(cert, ca)
    derived = _write(work, "derived.pem", _pem(cert))
    openssl_verify(issuing, derived)
    pki = tlspki.ensure_pki(paths)
    handshake(
        server_side(pki.server_cert, pki.server_key, client_trust=issuing),
        client_side(pki.ca_cert, derived, _write(work, "derived.key", _key_pem(phone_key))),
    )
