"""The phone's S/MIME step: a new signing key and certificate, and the card's
Key Management key recovered from the issuer.

After activation the phone holds its derived PIV Authentication credential
(:mod:`.wallet`). With it, it asks the enrollment server for S/MIME
credentials: a CSR for a signing key made here, and an ephemeral EC P-256 public
key. The request is signed with the derived authentication key over a fresh
server challenge (the server's :func:`request_digest` is recomputed here, not
imported, so the two sides are checked against each other).

What comes back is trusted only after checking it: the signing certificate
chains to the HSM issuing CA and is for our key; the recovered 9D key unwraps
with our ephemeral key and its public half equals the 9D certificate's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hwgate import recovery
from hwgate.v1 import hsm_pb2
from hwgate_apps.phone.wallet import ActivationError, Credential, make_csr, verify_chain
from hwgate_apps.web import tls_context

_DOMAIN = b"hwgate-apps/smime-request/v1\x00"


@dataclass(frozen=True)
class SmimeCredential:
    """The phone's S/MIME credentials: its signing key and certificate, and the card's
    Key Management key with its certificate (None when not asked for)."""

    signing_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    emails: list[str]
    km_key: Any = None  # the recovered 9D private key (RSA or EC)
    km_certificate: x509.Certificate | None = None


def request_digest(origin: str, challenge: bytes, csr_der: bytes, peer_key: bytes) -> bytes:
    """SHA-256(domain || SHA-256 of origin, challenge, CSR DER, peer key DER): what the
    derived authentication key signs (the server computes the same)."""
    parts = (origin.encode(), challenge, csr_der, peer_key)
    return hashlib.sha256(_DOMAIN + b"".join(hashlib.sha256(p).digest() for p in parts)).digest()


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _sign(key: Any, digest: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    raise ActivationError("the derived authentication key must be EC")


def _post(http: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(url, json=body)
    data: dict[str, Any] = response.json()
    if response.status_code != 201:
        raise ActivationError(f"{response.status_code} {data.get('error')}: {data.get('message')}")
    return data


def smime_request(
    base_url: str,
    enrollment_id: str,
    derived: Credential,
    csr_pem: str,
    peer_public_der: bytes,
    tls_ca: str | None,
) -> dict[str, Any]:
    """One signed S/MIME request (challenge, then the request); the server's JSON.

    Low level on purpose: tests send CSRs the simulator itself would never make."""
    base = f"{base_url.rstrip('/')}/enrollments/{enrollment_id}/smime"
    csr_der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    with httpx.Client(verify=tls_context(tls_ca), timeout=30) as http:
        got = _post(http, f"{base}/challenge", {})
        challenge = base64.b64decode(got["challenge"])
        digest = request_digest(got["origin"], challenge, csr_der, peer_public_der)
        body: dict[str, Any] = {
            "challenge_id": got["challenge_id"],
            "csr": csr_pem,
            "signature": base64.b64encode(_sign(derived.key, digest)).decode(),
        }
        if peer_public_der:
            body["peer_key"] = base64.b64encode(peer_public_der).decode()
        return _post(http, base, body)


def _check_signing_certificate(cert: x509.Certificate) -> list[str]:
    """The e-mail addresses of a usable S/MIME signing certificate."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise ActivationError("the signing certificate lacks SAN or key usage") from None
    emails = list(san.get_values_for_type(x509.RFC822Name))
    if not emails or not ku.digital_signature:
        raise ActivationError("the signing certificate names no e-mail or cannot sign")
    return emails


def _rewrap_result(delivered: dict[str, Any]) -> hsm_pb2.RewrapForPeerResponse:
    """The server's ``key_management`` JSON as the RewrapForPeerResponse hwgated gave it."""
    try:
        return hsm_pb2.RewrapForPeerResponse(
            wrapped_key=base64.b64decode(delivered["wrapped_key"], validate=True),
            hsm_public_key=base64.b64decode(delivered["hsm_public_key"], validate=True),
            kdf=str(delivered["kdf"]),  # enum names; an unknown one is a ValueError
            mechanism=str(delivered["mechanism"]),
        )
    except (KeyError, ValueError, TypeError, binascii.Error):
        raise ActivationError("the key-management answer is malformed") from None


def recover_km_key(
    delivered: dict[str, Any], peer: ec.EllipticCurvePrivateKey
) -> tuple[Any, x509.Certificate]:
    """Unwrap the re-wrapped 9D key with our ephemeral key (:mod:`hwgate.recovery`) and
    check it is the key of the 9D certificate that came with it."""
    try:
        km_cert = x509.load_pem_x509_certificate(str(delivered["certificate"]).encode())
        key = recovery.recover_private_key(peer, _rewrap_result(delivered))
    except (KeyError, ValueError) as err:  # RecoveryError is a ValueError
        raise ActivationError(f"the Key Management key cannot be recovered: {err}") from None
    if _public_der(key.public_key()) != _public_der(km_cert.public_key()):
        raise ActivationError("the recovered key does not match the Key Management certificate")
    return key, km_cert


def get_smime(
    base_url: str,
    enrollment_id: str,
    derived: Credential,
    anchor: x509.Certificate,
    tls_ca: str | None,
    *,
    recover: bool = True,
) -> SmimeCredential:
    """New signing key + CSR, a new ephemeral key (if *recover*), the request, the checks."""
    signing_key = ec.generate_private_key(ec.SECP256R1())
    peer = recovery.new_ephemeral_key() if recover else None
    peer_der = recovery.public_key_der(peer) if peer else b""
    data = smime_request(base_url, enrollment_id, derived, make_csr(signing_key), peer_der, tls_ca)
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in data["chain"]]
    verify_chain(chain, anchor, signing_key)
    emails = _check_signing_certificate(chain[0])
    km_key = km_cert = None
    if peer is not None:
        if "key_management" not in data:
            raise ActivationError("the server returned no Key Management key")
        km_key, km_cert = recover_km_key(data["key_management"], peer)
    return SmimeCredential(signing_key, chain[0], chain, emails, km_key, km_cert)
