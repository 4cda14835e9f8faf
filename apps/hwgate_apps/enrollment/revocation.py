"""Is this PIV Authentication certificate good right now? Chain, validity, CRL.

SP 800-157 §2.1: a derived credential is issued only against a PIV card whose
PIV Authentication certificate is valid and not revoked, and it must stop
working when the card is revoked (the lifecycle job asks the same question).

Order of checks, each with its own machine-readable ``error`` so the kiosk can
say why: the issuer is one of our PIV trust anchors (``piv_issuer_unknown``);
the certificate is in its validity period (``piv_cert_expired`` /
``piv_cert_not_yet_valid``); the path verifies under RFC 5280 with
``cryptography.x509.verification`` (``piv_chain_invalid``); the issuer's CRL
says it is not revoked (``piv_cert_revoked``). When no current CRL can be had
(no source, unreachable, stale, bad signature) the status is unknown and, by
default, that refuses too (``piv_revocation_unknown``): fail closed.

CRL source: the configured ``piv_crl_url`` if set (an operator's mirror takes
precedence), else the certificate's own CRL distribution points. ``http(s)://``,
``file://`` and plain paths are read. CRLs are cached per URL for
``crl_cache_seconds`` and never past their nextUpdate.

OCSP is not implemented: a certificate with only an AIA OCSP responder and
no CRL distribution point has an unknown status (refused when required).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509 import verification

MAX_CRL_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 10.0


class CardRefused(Exception):
    """The card's certificate is not acceptable; ``error`` is the stable reason."""

    def __init__(self, error: str, message: str, *, definite: bool = True) -> None:
        super().__init__(message)
        self.error, self.message = error, message
        # definite: the card is bad (revoked, expired); False: we could not tell.
        self.definite = definite


@dataclass(frozen=True)
class CardStatus:
    """A good certificate: how its revocation status was established."""

    revocation: str  # "good" (on no CRL), "unchecked" (checking not required, no CRL)
    crl_url: str = ""


class CrlError(Exception):
    """No usable CRL from this source."""


def read_source(url: str) -> bytes:
    """The bytes at *url*: http(s) with a timeout and a size cap, file:// or a path."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        try:
            with httpx.stream("GET", url, timeout=FETCH_TIMEOUT, follow_redirects=True) as r:
                if r.status_code != 200:
                    raise CrlError(f"{url}: HTTP {r.status_code}")
                data = bytearray()
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > MAX_CRL_BYTES:
                        raise CrlError(f"{url}: larger than {MAX_CRL_BYTES} bytes")
                return bytes(data)
        except httpx.HTTPError as err:
            raise CrlError(f"{url}: {err}") from None
    path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(url)
    if parts.scheme not in ("", "file"):
        raise CrlError(f"{url}: unsupported CRL location scheme {parts.scheme!r}")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CrlError(f"{url}: {err.strerror}") from None


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise CrlError("not a DER or PEM CRL") from None


def crl_urls(cert: x509.Certificate) -> list[str]:
    """The certificate's CRL distribution point URIs (http, https, file)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points:
        for name in point.full_name or []:
            uri = isinstance(name, x509.UniformResourceIdentifier)
            if uri and urlsplit(name.value).scheme in ("http", "https", "file"):
                urls.append(name.value)
    return urls


class PivValidator:
    """Validates PIV Authentication certificates against anchors and their CRLs."""

    def __init__(
        self,
        anchors: list[x509.Certificate],
        *,
        crl_url: str = "",
        require_status: bool = True,
        cache_seconds: float = 60.0,
    ) -> None:
        self.anchors = anchors
        self.crl_url = crl_url
        self.require_status = require_status
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, x509.CertificateRevocationList]] = {}
        self._lock = threading.Lock()

    def check(self, cert: x509.Certificate, now: dt.datetime | None = None) -> CardStatus:
        """CardStatus if *cert* is good now; CardRefused with the reason otherwise."""
        now = now or dt.datetime.now(dt.UTC)
        issuer = self._issuer(cert)
        if now > cert.not_valid_after_utc:
            raise CardRefused(
                "piv_cert_expired",
                f"the card's PIV Authentication certificate expired on "
                f"{cert.not_valid_after_utc:%Y-%m-%d}",
            )
        if now < cert.not_valid_before_utc:
            raise CardRefused(
                "piv_cert_not_yet_valid",
                "the card's PIV Authentication certificate is not valid yet",
            )
        self._verify_path(cert, issuer, now)
        return self._revocation(cert, issuer, now)

    def _issuer(self, cert: x509.Certificate) -> x509.Certificate:
        for anchor in self.anchors:
            if anchor.subject == cert.issuer:
                try:
                    cert.verify_directly_issued_by(anchor)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return anchor
        raise CardRefused(
            "piv_issuer_unknown",
            f"the card was issued by {cert.issuer.rfc4514_string()}, not a trusted PIV issuer",
        )

    def _verify_path(
        self, cert: x509.Certificate, anchor: x509.Certificate, now: dt.datetime
    ) -> None:
        """RFC 5280 path validation (cryptography's verifier) for a TLS-client-like leaf.

        The extension policies are relaxed to what a PIV Authentication
        certificate carries: its SAN holds an otherName and a URI, not a DNS name.
        """
        ca_policy = verification.ExtensionPolicy.webpki_defaults_ca()
        ee_policy = verification.ExtensionPolicy.permit_all()
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store([anchor]))
            .time(now)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            verifier.verify(cert, [])
        except verification.VerificationError as err:
            raise CardRefused(
                "piv_chain_invalid", f"the card's certificate path does not validate: {err}"
            ) from None

    def _revocation(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> CardStatus:
        urls = [self.crl_url] if self.crl_url else crl_urls(cert)
        problems = []
        for url in urls:
            try:
                crl = self._crl(url, issuer, now)
            except CrlError as err:
                problems.append(str(err))
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                return CardStatus("good", url)
            raise CardRefused("piv_cert_revoked", _revoked_message(entry))
        if not self.require_status:
            return CardStatus("unchecked")
        why = "; ".join(problems) or "no CRL configured and none named in the certificate"
        raise CardRefused(
            "piv_revocation_unknown",
            f"the card's revocation status cannot be established ({why})",
            definite=False,
        )

    def _crl(
        self, url: str, issuer: x509.Certificate, now: dt.datetime
    ) -> x509.CertificateRevocationList:
        with self._lock:
            cached = self._cache.get(url)
        if cached and time.monotonic() < cached[0] and _current(cached[1], now):
            return cached[1]
        crl = parse_crl(read_source(url))
        if crl.issuer != issuer.subject:
            raise CrlError(f"{url}: the CRL is not from {issuer.subject.rfc4514_string()}")
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise CrlError(f"{url}: the CRL's signature does not verify")
        if not _current(crl, now):
            raise CrlError(f"{url}: the CRL is outside its thisUpdate..nextUpdate window")
        with self._lock:
            self._cache[url] = (time.monotonic() + self.cache_seconds, crl)
        return crl


def _current(crl: x509.CertificateRevocationList, now: dt.datetime) -> bool:
    nxt = crl.next_update_utc
    return crl.last_update_utc <= now and (nxt is None or now <= nxt)


def _revoked_message(entry: x509.RevokedCertificate) -> str:
    reason = ""
    try:
        flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        reason = f" ({flag.name.replace('_', ' ')})"
    except x509.ExtensionNotFound:
        pass
    when = entry.revocation_date_utc
    return f"the card's PIV Authentication certificate was revoked on {when:%Y-%m-%d}{reason}"
