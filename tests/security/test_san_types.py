"""Issue 14, finding 4: a ``san_uri`` rule matched DNS and e-mail SANs with the same text.

gRPC's ``x509_subject_alternative_name`` merges every SAN type into one list of
strings, so a certificate whose *DNS* SAN read ``spiffe://hwgate.test/admin``
got the admin role. URI rules now match URI SANs only, CN rules the subject CN
only. The certificates here come from the security PKI's own CA, so the TLS
layer accepts them and only the identity mapping stands between them and a role.
"""

from __future__ import annotations

import datetime

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import SPIFFE, Credential, SecurityDaemon, TestCa, failure

from hwgated.auth.peer_cert import NO_NAMES, parse_peer_names

ADMIN_URI = SPIFFE + "admin"
UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED_PEER")


def mint(ca: TestCa, cn: str | None, sans: list[x509.GeneralName]) -> Credential:
    """A client certificate from *ca* with exactly these subject CN and SANs."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Credential(cert.public_bytes(serialization.Encoding.PEM), pem_key)


def health(secd: SecurityDaemon, cred: Credential) -> health_pb2.HealthCheckResponse:
    creds = grpc.ssl_channel_credentials(
        root_certificates=secd.pki.ca.pem, private_key=cred.key, certificate_chain=cred.cert
    )
    with grpc.secure_channel(f"127.0.0.1:{secd.tls_port}", creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=10)


IMPOSTORS = {
    "dns-san": (None, [x509.DNSName(ADMIN_URI)]),
    "email-san": (None, [x509.RFC822Name(ADMIN_URI)]),
    "cn-equal-to-uri": (ADMIN_URI, []),
    "dns-san-equal-to-cn-rule": (None, [x509.DNSName("operator")]),  # cn = "operator" → admin
    "uri-san-equal-to-cn-rule": (None, [x509.UniformResourceIdentifier("operator")]),
}


@pytest.mark.parametrize("name", sorted(IMPOSTORS))
def test_name_of_the_wrong_type_is_unauthenticated(secd: SecurityDaemon, name: str) -> None:
    cn, sans = IMPOSTORS[name]
    cred = mint(secd.pki.ca, cn, sans)
    code, reason, _ = failure(lambda: health(secd, cred))
    assert (code, reason) == UNAUTHENTICATED


def test_uri_san_and_cn_still_map(secd: SecurityDaemon) -> None:
    """Positive controls: the right type of the same names gets in."""
    serving = health_pb2.HealthCheckResponse.SERVING
    assert (
        health(secd, mint(secd.pki.ca, None, [x509.UniformResourceIdentifier(ADMIN_URI)])).status
        == serving
    )
    assert (
        health(secd, mint(secd.pki.ca, "operator", [x509.DNSName("client.example")])).status
        == serving
    )


def test_parse_peer_names_keeps_types_apart() -> None:
    ca = TestCa("unit CA")
    cred = mint(
        ca,
        "operator",
        [
            x509.DNSName("dns.example"),
            x509.RFC822Name("someone@example.org"),
            x509.UniformResourceIdentifier(ADMIN_URI),
        ],
    )
    names = parse_peer_names(cred.cert)
    assert names.uris == {ADMIN_URI}
    assert names.cns == {"operator"}
    assert parse_peer_names(b"not a certificate") is NO_NAMES
