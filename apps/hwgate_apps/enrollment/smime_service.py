"""S/MIME issuance for an enrollment: the phone, holding its derived PIV Authentication
credential, gets a signing certificate and its Key Management key.

Steps (HTTP in :mod:`.smime_app`):

1. At enrollment the kiosk forwards the card's 9C/9D certificates; they are
   checked (:func:`.smime.check_card_certificates`) and kept with it.
2. ``POST /enrollments/{id}/smime/challenge``: a single-use challenge, once the
   derived PIV Authentication certificate is issued.
3. ``POST /enrollments/{id}/smime``: the signing CSR, the phone's ephemeral
   P-256 public key (optional: without it, no key recovery), and a signature
   with the derived authentication key over :func:`.smime.request_digest`. The
   server verifies it with the certificate it issued to this enrollment, claims
   the S/MIME part once, issues the signing certificate through hwgated
   (``issuing-ca`` never leaves the HSM), and asks hwgated to re-wrap the
   escrowed 9D key for the phone's key (:mod:`.recovery`).

Refusals are :class:`ApiError` with a stable ``error`` string.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hwgate.certfmt import serial_hex
from hwgate_apps.enrollment.issuer import CsrError
from hwgate_apps.enrollment.proof import Cardholder, ProofError, verify_signature
from hwgate_apps.enrollment.recovery import RecoveryError
from hwgate_apps.enrollment.smime import (
    CARD_SLOTS,
    CardCertificateError,
    CardCertificates,
    SmimeProfile,
    build_signing_certificate,
    check_card_certificates,
    check_signing_csr,
    request_digest,
)
from hwgate_apps.enrollment.smime_store import SmimeStore
from hwgate_apps.web import ApiError, unb64

if TYPE_CHECKING:
    from hwgate_apps.enrollment.service import EnrollmentService

log = logging.getLogger(__name__)
CHALLENGE_BYTES = 32
MAX_PEER_KEY_BYTES = 256


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _challenge_owner(eid: str) -> str:
    """The challenge table's binding for an S/MIME request (kiosk sessions never look so)."""
    return f"smime:{eid}"


def _peer_key(value: Any) -> bytes:
    """The phone's ephemeral key: DER SubjectPublicKeyInfo on P-256, or b"" if absent."""
    if value in (None, ""):
        return b""
    der = unb64(value, "peer_key")
    if len(der) > MAX_PEER_KEY_BYTES:
        raise ApiError(400, "bad_peer_key", "peer_key is too long")
    try:
        key = serialization.load_der_public_key(der)
    except ValueError:
        raise ApiError(400, "bad_peer_key", "peer_key is not a DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ApiError(400, "bad_peer_key", "peer_key must be an EC P-256 public key")
    return der


class SmimeService:
    """The S/MIME half of the enrollment server (shares its store, config and hwgate)."""

    def __init__(self, service: EnrollmentService) -> None:
        self.service = service
        self.store = SmimeStore(service.store)

    # --- step 1: at enrollment ---

    def check_card_certificates(
        self, body: dict[str, Any], holder: Cardholder
    ) -> CardCertificates | None:
        """The kiosk's ``card_certificates`` checked against the proven card (None if absent)."""
        given = body.get("card_certificates")
        if given is None:
            return None
        if not isinstance(given, dict) or not set(given) <= set(CARD_SLOTS):
            raise ApiError(400, "bad_request", f"card_certificates: keys among {CARD_SLOTS}")
        decoded = {slot: unb64(v, f"card_certificates.{slot}") for slot, v in given.items()}
        try:
            return check_card_certificates(
                decoded, holder.certificate, self.service.piv_issuer, dt.datetime.now(dt.UTC)
            )
        except (CardCertificateError, ProofError) as err:
            log.info("card certificates refused: %s", err)
            raise ApiError(403, "card_certificates_refused", str(err)) from None

    def record(self, eid: str, certs: CardCertificates | None) -> None:
        if certs is not None:
            self.store.add(eid, certs.signature, certs.key_management, certs.emails)

    # --- step 2 ---

    def new_challenge(self, eid: str) -> dict[str, Any]:
        row, _ = self._eligible(eid)
        cid, challenge = str(uuid.uuid4()), secrets.token_bytes(CHALLENGE_BYTES)
        ttl = self.service.config.challenge_ttl
        self.service.store.add_challenge(cid, challenge, _challenge_owner(row.id), ttl)
        return {
            "challenge_id": cid,
            "challenge": base64.b64encode(challenge).decode(),
            "origin": self.service.config.origin,
            "expires_in": ttl,
        }

    def _eligible(self, eid: str) -> tuple[Any, Any]:
        """The enrollment and its S/MIME record, if S/MIME may be asked for now."""
        row = self.service.store.get(eid)
        if row is None:
            raise ApiError(404, "not_found", "no such enrollment")
        if row.status != "issued" or row.derived_cert is None:
            raise ApiError(409, "not_issued", "the derived PIV credential is not (or no longer) "
                           "issued for this enrollment")  # fmt: skip
        record = self.store.get(eid)
        if record is None:
            raise ApiError(409, "no_card_certificates",
                           "the kiosk sent no e-mail certificates of this card")  # fmt: skip
        if record.status != "available":
            raise ApiError(409, "smime_used", "S/MIME credentials were already issued")
        return row, record

    # --- step 3 ---

    def issue(self, eid: str, body: dict[str, Any]) -> dict[str, Any]:
        row, record = self._eligible(eid)
        csr_pem = str(body.get("csr", ""))
        peer = _peer_key(body.get("peer_key"))
        if peer and record.card_km_cert is None:
            raise ApiError(409, "no_key_management_certificate",
                           "the card's Key Management certificate was not forwarded")  # fmt: skip
        derived = x509.load_der_x509_certificate(row.derived_cert)
        card_certs = [x509.load_der_x509_certificate(d) for d in
                      (record.card_sign_cert, record.card_km_cert) if d is not None]  # fmt: skip
        try:
            csr = check_signing_csr(csr_pem, record.emails, [derived, *card_certs])
        except CsrError as err:
            raise ApiError(400, "csr_refused", str(err)) from None
        self._check_request(row.id, body, csr, peer, derived)
        if not self.store.claim(eid):
            raise ApiError(409, "smime_used", "S/MIME credentials were already issued")
        try:
            self.service.lifecycle.check_card(row.piv_auth_cert)  # the card still good?
            cert = self._sign(row, record, csr)
            recovered = self._recover(record.card_km_cert, peer) if peer else None
        except BaseException:
            self.store.release(eid)
            raise
        serial = serial_hex(cert.serial_number)
        self.store.record_issued(eid, serial, cert.public_bytes(serialization.Encoding.DER),
                                 recovered is not None)  # fmt: skip
        log.info("enrollment %s: S/MIME signing certificate %s issued%s", eid, serial,
                 ", key-management key re-wrapped for the phone" if recovered else "")  # fmt: skip
        chain = [_pem(cert), _pem(self.service.issuing_ca)]
        result: dict[str, Any] = {"certificate": chain[0], "chain": chain, "serial": serial,
                                  "emails": list(record.emails)}  # fmt: skip
        if recovered is not None:
            result["key_management"] = recovered
        return result

    def _check_request(
        self, eid: str, body: dict[str, Any], csr: Any, peer: bytes, derived: x509.Certificate
    ) -> None:
        """The single-use challenge, and the derived key's signature over the request."""
        challenge = self.service.store.consume_challenge(
            str(body.get("challenge_id", "")), _challenge_owner(eid)
        )
        if challenge is None:
            raise ApiError(403, "challenge_invalid", "unknown, used or expired challenge")
        digest = request_digest(
            self.service.config.origin, challenge,
            csr.public_bytes(serialization.Encoding.DER), peer,
        )  # fmt: skip
        try:
            verify_signature(derived, unb64(body.get("signature"), "signature"), digest)
        except ProofError as err:
            log.info("S/MIME request for %s refused: %s", eid, err)
            raise ApiError(403, "proof_refused", "the request is not signed by this "
                           "enrollment's derived PIV Authentication key") from None  # fmt: skip

    def _sign(self, row: Any, record: Any, csr: Any) -> x509.Certificate:
        config = self.service.config
        piv_auth = x509.load_der_x509_certificate(row.piv_auth_cert)
        # Never past the PIV Auth certificate, nor past the derived PIV Auth
        # credential this request is signed with (issued moments earlier with
        # the same configured validity: "now + validity" alone ends a second later).
        not_after = piv_auth.not_valid_after_utc
        if row.derived_cert is not None:
            derived = x509.load_der_x509_certificate(row.derived_cert)
            not_after = min(not_after, derived.not_valid_after_utc)
        profile = SmimeProfile(
            subject=piv_auth.subject,
            emails=record.emails,
            piv_auth_not_after=not_after,
            policy_oid=config.smime_policy_oid,
            validity=dt.timedelta(days=config.derived_validity_days),
            ca_issuers_url=config.ca_issuers_url,
            ocsp_url=config.ocsp_url,
            crl_url=config.crl_url,
        )
        try:
            now = dt.datetime.now(dt.UTC)
            ca, ca_key = self.service.issuing_ca, self.service.ca_key()
            return build_signing_certificate(csr, profile, ca, ca_key, now)
        except CsrError as err:
            raise ApiError(409, "smime_refused", str(err)) from None

    def _recover(self, km_der: bytes | None, peer: bytes) -> dict[str, Any]:
        """The card's 9D key re-wrapped by hwgated for *peer*, with the 9D certificate."""
        assert km_der is not None
        km_cert = x509.load_der_x509_certificate(km_der)
        recovery = self.service.recovery
        if recovery is None:
            raise ApiError(501, "key_recovery_unavailable",
                           "this server has no key escrow configured")  # fmt: skip
        try:
            delivered = recovery.rewrap_for_peer(km_cert, peer)
        except RecoveryError as err:
            raise ApiError(409, "key_recovery_refused", str(err)) from None
        return {"certificate": _pem(km_cert), **delivered}
