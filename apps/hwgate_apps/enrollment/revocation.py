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

Status sources, in order: OCSP (RFC 6960) at ``piv_ocsp_url`` if set, else at
the certificate's AIA OCSP responders; then the CRL at ``piv_crl_url`` if set
(an operator's mirror takes precedence), else at the certificate's CRL
distribution points. The first definite answer (good or revoked) decides; an
OCSP "unknown", an unreachable responder or a bad response falls through to
the CRL. OCSP responses must be signed by the issuer itself or by a delegated
responder certificate it issued with the OCSPSigning EKU, must answer for this
serial and issuer (hashes compared with a request built by cryptography) and
echo our nonce if they carry one. ``http(s)://``, ``file://`` and plain paths
are read for CRLs. CRLs are cached per URL for ``crl_cache_seconds`` and never
past their nextUpdate; OCSP answers are not cached.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp, verification
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

MAX_CRL_BYTES = 20 * 1024 * 1024
MAX_OCSP_BYTES = 1024 * 1024
FETCH_TIMEOUT = 10.0
CLOCK_SKEW = dt.timedelta(minutes=5)
OCSP_MAX_AGE = dt.timedelta(days=7)  # a response without nextUpdate, at most this old


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

    revocation: str  # "good" (OCSP or CRL), "unchecked" (checking not required, no source)
    source: str = ""  # the OCSP responder or CRL URL that answered


class CrlError(Exception):
    """No usable CRL (or OCSP answer) from this source."""


def _http_body(response: httpx.Response, url: str, limit: int) -> bytes:
    if response.status_code != 200:
        raise CrlError(f"{url}: HTTP {response.status_code}")
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > limit:
            raise CrlError(f"{url}: larger than {limit} bytes")
    return bytes(data)


def read_source(url: str) -> bytes:
    """The bytes at *url*: http(s) with a timeout and a size cap, file:// or a path."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        try:
            with httpx.stream("GET", url, timeout=FETCH_TIMEOUT, follow_redirects=True) as r:
                return _http_body(r, url, MAX_CRL_BYTES)
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


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """The certificate's AIA OCSP responder URIs (http, https)."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        d.access_location.value
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
        and urlsplit(d.access_location.value).scheme in ("http", "https")
    ]


def _signature_ok(key: object, signature: bytes, data: bytes, algorithm: object) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))  # type: ignore[arg-type]
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)  # type: ignore[arg-type]
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _ocsp_signer(resp: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate:
    """The issuer, or a delegated responder it issued for OCSP signing (RFC 6960 4.2.2.2)."""
    if _responder_is(resp, issuer):
        return issuer
    for cert in resp.certificates:
        if not _responder_is(resp, cert):
            continue
        try:
            cert.verify_directly_issued_by(issuer)
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku:
            return cert
    raise CrlError("the OCSP response is not signed by the issuer or its delegated responder")


def _responder_is(resp: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if resp.responder_name is not None:
        return bool(resp.responder_name == cert.subject)
    # KeyHash is SHA-1 of the key's BIT STRING: exactly the key identifier of
    # RFC 5280 4.2.1.2 method (1), which cryptography computes.
    ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    return bool(resp.responder_key_hash == ski.digest)


class PivValidator:
    """Validates PIV Authentication certificates against anchors and their CRLs."""

    def __init__(
        self,
        anchors: list[x509.Certificate],
        *,
        crl_url: str = "",
        ocsp_url: str = "",
        require_status: bool = True,
        cache_seconds: float = 60.0,
    ) -> None:
        self.anchors = anchors
        self.crl_url = crl_url
        self.ocsp_url = ocsp_url
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
        problems = []
        for url in [self.ocsp_url] if self.ocsp_url else ocsp_urls(cert):
            try:
                answer = self._ocsp(url, cert, issuer, now)
            except CrlError as err:
                problems.append(str(err))
                continue
            if answer.certificate_status == ocsp.OCSPCertStatus.GOOD:
                return CardStatus("good", url)
            if answer.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                raise CardRefused("piv_cert_revoked", _revoked_message(
                    answer.revocation_time_utc, answer.revocation_reason))  # fmt: skip
            problems.append(f"{url}: the OCSP responder does not know the certificate")
        urls = [self.crl_url] if self.crl_url else crl_urls(cert)
        for url in urls:
            try:
                crl = self._crl(url, issuer, now)
            except CrlError as err:
                problems.append(str(err))
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                return CardStatus("good", url)
            try:
                flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            except x509.ExtensionNotFound:
                flag = None
            raise CardRefused("piv_cert_revoked", _revoked_message(entry.revocation_date_utc, flag))
        if not self.require_status:
            return CardStatus("unchecked")
        why = "; ".join(problems) or "no CRL or OCSP responder configured or named in it"
        raise CardRefused(
            "piv_revocation_unknown",
            f"the card's revocation status cannot be established ({why})",
            definite=False,
        )

    def _ocsp(
        self, url: str, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> ocsp.OCSPSingleResponse:
        """The responder's verified single answer for *cert* (CrlError if unusable)."""
        nonce = os.urandom(16)
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(cert, issuer, hashes.SHA1())  # RFC 5019: what responders take
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .build()
        )
        body = request.public_bytes(serialization.Encoding.DER)
        headers = {"Content-Type": "application/ocsp-request"}
        try:
            with httpx.stream("POST", url, content=body, headers=headers,
                              timeout=FETCH_TIMEOUT) as r:  # fmt: skip
                data = _http_body(r, url, MAX_OCSP_BYTES)
        except httpx.HTTPError as err:
            raise CrlError(f"{url}: {err}") from None
        try:
            resp = ocsp.load_der_ocsp_response(data)
        except ValueError:
            raise CrlError(f"{url}: not a DER OCSP response") from None
        if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise CrlError(f"{url}: OCSP {resp.response_status.name}")
        signer = _ocsp_signer(resp, issuer)
        if not _signature_ok(signer.public_key(), resp.signature, resp.tbs_response_bytes,
                             resp.signature_hash_algorithm):  # fmt: skip
            raise CrlError(f"{url}: the OCSP response's signature does not verify")
        try:
            echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            echoed = None
        if echoed is not None and echoed != nonce:
            raise CrlError(f"{url}: the OCSP response is for another request (nonce)")
        for single in resp.responses:
            same = (single.serial_number, single.issuer_key_hash, single.issuer_name_hash) == (
                request.serial_number,
                request.issuer_key_hash,
                request.issuer_name_hash,
            )
            if not same:
                continue
            nxt = single.next_update_utc
            fresh = single.this_update_utc <= now + CLOCK_SKEW and (
                now <= nxt if nxt is not None else now - single.this_update_utc <= OCSP_MAX_AGE
            )
            if not fresh:
                raise CrlError(f"{url}: the OCSP answer is outside its validity")
            return single
        raise CrlError(f"{url}: the OCSP response does not answer for this certificate")

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


def _revoked_message(when: dt.datetime | None, flag: x509.ReasonFlags | None) -> str:
    reason = f" ({flag.name.replace('_', ' ')})" if flag is not None else ""
    date = f" on {when:%Y-%m-%d}" if when is not None else ""
    return f"the card's PIV Authentication certificate was revoked{date}{reason}"
