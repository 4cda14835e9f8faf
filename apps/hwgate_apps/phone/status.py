"""The phone checks its own derived credential: is it on the issuing CA's CRL?

The CRL comes from the certificate's CRL distribution point (the enrollment
server's ``GET /crl/issuing-ca.crl``) or ``--crl-url``; it is trusted only if
it is signed by the issuing CA the phone was configured with and current.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import httpx
from cryptography import x509

from hwgate_apps.phone.wallet import ActivationError
from hwgate_apps.web import tls_context


@dataclass(frozen=True)
class CredentialStatus:
    """``good`` or ``revoked`` (with the CRL's date and reason), per CRL number."""

    status: str
    crl_number: int | None
    revoked_at: dt.datetime | None = None
    reason: str = ""


def _crl_url(cert: x509.Certificate) -> str:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        raise ActivationError("the certificate names no CRL; give --crl-url") from None
    for point in points:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier):
                return name.value
    raise ActivationError("the certificate's CRL distribution point has no URI")


def check_status(
    cert: x509.Certificate, anchor: x509.Certificate, tls_ca: str | None, crl_url: str = ""
) -> CredentialStatus:
    """Fetch and verify the CRL, then look the certificate up in it."""
    url = crl_url or _crl_url(cert)
    try:
        response = httpx.get(url, verify=tls_context(tls_ca), timeout=30)
    except httpx.HTTPError as err:
        raise ActivationError(f"{url}: {err}") from None
    if response.status_code != 200:
        raise ActivationError(f"{url}: HTTP {response.status_code}")
    try:
        crl = x509.load_der_x509_crl(response.content)
    except ValueError:
        raise ActivationError(f"{url}: not a DER CRL") from None
    now = dt.datetime.now(dt.UTC)
    if crl.issuer != anchor.subject or not crl.is_signature_valid(anchor.public_key()):  # type: ignore[arg-type]
        raise ActivationError("the CRL is not signed by the trusted issuing CA")
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        raise ActivationError("the CRL is out of date")
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return CredentialStatus("good", number)
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        reason = "unspecified"
    return CredentialStatus("revoked", number, entry.revocation_date_utc, reason)
