"""Derived PIV Authentication certificates (FPKI profile, PIV-REFERENCE §9).

The certificate is built with ``cryptography``'s CertificateBuilder and signed
with ``issuing-ca`` through hwgated (``Client.hsm_key``): the CA key never
leaves the HSM, the server only sends the digest.

Profile: policy id-fpki-common-derived-pivAuth(-hardware); SAN ``urn:uuid:``
of the card's UUID; KU digitalSignature only, critical; SKI and AKI; EKU
clientAuth (optional, non-critical); piv-interim; validity at most the PIV
Authentication certificate's, 3 years and the issuing CA's. AIA and CRL DP
are added when configured (the reference setup names its CRL, GET /crl/issuing-ca.crl).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

OID_PIV_INTERIM = x509.ObjectIdentifier("2.16.840.1.101.3.6.9.1")
_DER_FALSE = b"\x01\x01\x00"
MAX_VALIDITY = dt.timedelta(days=3 * 365)
BACKDATE = dt.timedelta(minutes=5)


class CsrError(Exception):
    """The CSR is refused; the message says why (safe to return)."""


def check_csr(pem: str) -> x509.CertificateSigningRequest:
    """A parsed CSR whose self-signature verifies and whose key is P-256 or RSA >= 2048."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise CsrError("the CSR is not PEM PKCS#10") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature):
        valid = False
    if not valid:
        raise CsrError("the CSR's self-signature does not verify")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise CsrError(f"EC keys must be P-256, not {key.curve.name}")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrError(f"RSA keys must be at least 2048 bits, not {key.key_size}")
    else:
        raise CsrError("the key must be EC P-256 or RSA")
    return csr


@dataclass(frozen=True)
class DerivedProfile:
    """What the derived certificate says about whom, and for how long at most."""

    subject: x509.Name
    card_uuid: str
    piv_auth_not_after: dt.datetime
    policy_oid: str
    validity: dt.timedelta
    ca_issuers_url: str = ""
    ocsp_url: str = ""
    crl_url: str = ""


def not_after(profile: DerivedProfile, ca: x509.Certificate, now: dt.datetime) -> dt.datetime:
    """The earliest of: the configured validity, 3 years, the PIV Auth cert, the CA."""
    limits = [now + profile.validity, now + MAX_VALIDITY, profile.piv_auth_not_after]
    return min([*limits, ca.not_valid_after_utc])


def _access_extensions(builder: x509.CertificateBuilder, p: DerivedProfile) -> Any:
    access = []
    if p.ca_issuers_url:
        gn = x509.UniformResourceIdentifier(p.ca_issuers_url)
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, gn))
    if p.ocsp_url:
        gn = x509.UniformResourceIdentifier(p.ocsp_url)
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.OCSP, gn))
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if p.crl_url:
        point = x509.DistributionPoint(
            [x509.UniformResourceIdentifier(p.crl_url)], None, None, None
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder


def _key_usage() -> x509.KeyUsage:
    return signature_key_usage(non_repudiation=False)


def signature_key_usage(*, non_repudiation: bool) -> x509.KeyUsage:
    """digitalSignature, and nonRepudiation (contentCommitment) if asked: the derived
    PIV Authentication certificate has only the first, the S/MIME signing one both."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def build_derived_certificate(
    csr: x509.CertificateSigningRequest,
    profile: DerivedProfile,
    ca_cert: x509.Certificate,
    ca_key: Any,
    now: dt.datetime,
) -> x509.Certificate:
    """Issue the derived PIV Authentication certificate; *ca_key* signs (in the HSM)."""
    return build_end_entity_certificate(
        csr, profile, ca_cert, ca_key, now,
        key_usage=_key_usage(),
        names=[x509.UniformResourceIdentifier(f"urn:uuid:{profile.card_uuid}")],
        ekus=[ExtendedKeyUsageOID.CLIENT_AUTH],
        extra=[x509.UnrecognizedExtension(OID_PIV_INTERIM, _DER_FALSE)],
    )  # fmt: skip


def build_end_entity_certificate(
    csr: x509.CertificateSigningRequest,
    profile: DerivedProfile,
    ca_cert: x509.Certificate,
    ca_key: Any,
    now: dt.datetime,
    *,
    key_usage: x509.KeyUsage,
    names: Sequence[x509.GeneralName],
    ekus: Sequence[x509.ObjectIdentifier],
    extra: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    """One derived credential's certificate for the CSR's key, as every derived
    certificate here has it: the profile's subject and policy, ending no later than
    the card's PIV Authentication certificate and the CA (``not_after``), SKI/AKI, the
    profile's AIA and CRL distribution point; the caller's key usage (critical), SAN
    names, EKUs and any *extra* (non-critical) extensions. *ca_key* signs (in the HSM)."""
    end = not_after(profile, ca_cert, now)
    if end <= now:
        raise CsrError("the PIV Authentication certificate or the CA expires too soon")
    public = csr.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    policy = x509.PolicyInformation(x509.ObjectIdentifier(profile.policy_oid), None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(profile.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.CertificatePolicies([policy]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    builder = _access_extensions(builder, profile)
    return builder.sign(ca_key, hashes.SHA256())
