"""The phone's side of activation: key pair, CSR, request, chain verification."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hwgate_apps.web import tls_context


class ActivationError(Exception):
    """The server refused, or what it returned does not verify."""


@dataclass(frozen=True)
class Payload:
    """What the QR code carries."""

    base_url: str
    enrollment_id: str
    code: str


@dataclass(frozen=True)
class Credential:
    """The phone's derived credential: its key and the verified certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate]

    @property
    def policy_oids(self) -> list[str]:
        ext = self.certificate.extensions.get_extension_for_class(x509.CertificatePolicies)
        return [p.policy_identifier.dotted_string for p in ext.value]

    @property
    def uuid_uri(self) -> str:
        san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return next(iter(san.get_values_for_type(x509.UniformResourceIdentifier)), "")


def parse_payload(text: str) -> Payload:
    """``https://host[:port]/activate?enrollment=ID&code=CODE`` -> Payload."""
    parts = urlsplit(text.strip())
    query = parse_qs(parts.query)
    if parts.scheme != "https" or not query.get("enrollment") or not query.get("code"):
        raise ActivationError(f"not an activation link: {text!r}")
    return Payload(f"https://{parts.netloc}", query["enrollment"][0], query["code"][0])


def make_csr(key: ec.EllipticCurvePrivateKey) -> str:
    """A PKCS#10 request; the server takes the subject from the card, not from here."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hwgate phone simulator")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def verify_chain(
    chain: list[x509.Certificate], anchor: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    """Leaf for our key, issued by the anchor (the HSM CA), everything valid now."""
    leaf, now = chain[0], dt.datetime.now(dt.UTC)
    if leaf.public_key() != key.public_key():
        raise ActivationError("the certificate is not for this phone's key")
    if chain[-1] != anchor:
        raise ActivationError("the chain does not end at the trusted issuing CA")
    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise ActivationError(f"{child.subject.rfc4514_string()} does not verify") from None
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ActivationError(f"{cert.subject.rfc4514_string()} is not valid now")


def activate(
    payload: Payload, anchor: x509.Certificate, tls_ca: str | None, token: str = ""
) -> Credential:
    """Generate the key, redeem the code (with the device's sign-in *token*, if it has one),
    verify what comes back."""
    key = ec.generate_private_key(ec.SECP256R1())
    url = f"{payload.base_url}/enrollments/{payload.enrollment_id}/certificate"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        url,
        json={"csr": make_csr(key), "code": payload.code},
        headers=headers,
        verify=tls_context(tls_ca),
        timeout=30,
    )
    data = response.json()
    if response.status_code != 201:
        raise ActivationError(f"{response.status_code} {data.get('error')}: {data.get('message')}")
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in data["chain"]]
    verify_chain(chain, anchor, key)
    return Credential(key, chain[0], chain)
