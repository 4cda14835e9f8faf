"""The enrollment logic, independent of HTTP: challenge, enroll, issue, list, revoke.

Each refusal is an :class:`ApiError` carrying the HTTP status and a stable
machine-readable ``error`` string; the web layer only serializes it.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hwgate.certfmt import serial_hex
from hwgate_apps.enrollment import activation
from hwgate_apps.enrollment.config import EnrollmentConfig
from hwgate_apps.enrollment.device_service import DeviceFlow
from hwgate_apps.enrollment.issuer import (
    CsrError,
    DerivedProfile,
    build_derived_certificate,
    check_csr,
)
from hwgate_apps.enrollment.lifecycle import REASON_ADMIN, Lifecycle
from hwgate_apps.enrollment.proof import Cardholder, ProofError, check_proof
from hwgate_apps.enrollment.recovery import EscrowDirectory, KeyRecovery
from hwgate_apps.enrollment.smime_service import SmimeService
from hwgate_apps.enrollment.store import Enrollment, Store
from hwgate_apps.web import ApiError, b64, unb64

log = logging.getLogger(__name__)
CHALLENGE_BYTES = 32
TOO_MANY = "this cardholder already has the maximum of derived credentials"


def _load_pem(path: Any) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class EnrollmentService:
    """Holds the store, the trust anchors and the hwgate client (enrollment role)."""

    def __init__(self, config: EnrollmentConfig, hsm: Any) -> None:
        self.config = config
        self.store = Store(config.database)
        self.hsm = hsm  # hwgate.Client over mTLS
        self.piv_issuer = _load_pem(config.piv_issuer_ca)
        self.issuing_ca = _load_pem(config.issuing_ca_cert)
        self._ca_key: Any = None
        anchors = x509.load_pem_x509_certificates(config.piv_issuer_ca.read_bytes())
        self.lifecycle = Lifecycle(self, anchors)
        self.devices = DeviceFlow(self)  # RFC 8628 sign-in (its own tables)
        self.recovery: KeyRecovery | None = None  # key recovery, when escrow is configured
        if config.escrow_dir:
            escrow = EscrowDirectory(Path(config.escrow_dir))
            self.recovery = KeyRecovery(hsm, escrow, config.escrow_wrapping_key)
        self.smime = SmimeService(self)

    def ca_key(self) -> Any:
        """The issuing CA key as a cryptography key that signs in the HSM (fetched once)."""
        if self._ca_key is None:
            self._ca_key = self.hsm.hsm_key(self.config.issuing_key)
        return self._ca_key

    # --- step 3: challenge and proof of possession ---

    def new_challenge(self, kiosk_session: str) -> dict[str, Any]:
        if not kiosk_session or len(kiosk_session) > 128:
            raise ApiError(400, "bad_request", "kiosk_session is required (at most 128 chars)")
        cid, challenge = str(uuid.uuid4()), secrets.token_bytes(CHALLENGE_BYTES)
        self.store.add_challenge(cid, challenge, kiosk_session, self.config.challenge_ttl)
        return {
            "challenge_id": cid,
            "challenge": b64(challenge),
            "origin": self.config.origin,
            "expires_in": self.config.challenge_ttl,
        }

    def enroll(self, body: dict[str, Any]) -> dict[str, Any]:
        challenge = self.store.consume_challenge(
            str(body.get("challenge_id", "")), str(body.get("kiosk_session", ""))
        )
        if challenge is None:
            raise ApiError(403, "challenge_invalid", "unknown, used or expired challenge")
        # Valid, chained and not revoked, with the precise reason if not (piv_cert_*).
        self.lifecycle.check_card(unb64(body.get("certificate"), "certificate"))
        try:
            holder = check_proof(
                certificate_der=unb64(body.get("certificate"), "certificate"),
                signature=unb64(body.get("signature"), "signature"),
                challenge=challenge,
                origin=self.config.origin,  # ours, never the kiosk's
                issuer=self.piv_issuer,
                now=dt.datetime.now(dt.UTC),
            )
        except ProofError as err:
            log.info("proof of possession refused: %s", err)
            raise ApiError(403, "proof_refused", str(err)) from None
        self._check_cap(holder.fasc_n)
        return self.new_enrollment(holder, body)

    def new_enrollment(self, holder: Cardholder, body: dict[str, Any]) -> dict[str, Any]:
        """A pending enrollment for a verified cardholder: its code and QR payload.

        *body* is the kiosk's request: its ``origin`` and the card's other
        certificates (``card_certificates``, checked against *holder*'s card).
        """
        kiosk_origin = str(body.get("origin", ""))
        card_certs = self.smime.check_card_certificates(body, holder)
        eid = str(uuid.uuid4())
        expires = time.time() + self.config.code_ttl
        self.store.add_enrollment(
            Enrollment(
                id=eid, fasc_n=holder.fasc_n, card_uuid=holder.card_uuid,
                subject=holder.subject,
                piv_auth_cert=holder.certificate.public_bytes(serialization.Encoding.DER),
                kiosk_origin=kiosk_origin, created_at=time.time(),
                status="pending", code_issue=1, code_expires_at=expires,
                attempts_left=self.config.code_attempts, derived_serial=None,
                derived_cert=None, issued_at=None, revoked_at=None,
            )
        )  # fmt: skip
        self.smime.record(eid, card_certs)
        self.lifecycle.remember_contact(eid, holder.certificate, body.get("email"))
        code = activation.activation_code(self.hsm, self.config.activation_key, eid, 1)
        log.info("enrollment %s created for FASC-N %s", eid, holder.fasc_n)
        return {
            "enrollment_id": eid,
            "code": code,
            "qr_payload": f"{self.config.qr_base}/activate?enrollment={eid}&code={code}",
            "expires_at": expires,
            "subject": holder.subject,
            "fasc_n": holder.fasc_n,
            "card_uuid": holder.card_uuid,
        }

    def _check_cap(self, fasc_n: str) -> None:
        if self.store.active_credentials(fasc_n) >= self.config.max_credentials_per_cardholder:
            raise ApiError(409, "too_many_credentials", TOO_MANY)

    # --- step 5: the phone redeems the code ---

    def issue(self, eid: str, body: dict[str, Any], authorization: str = "") -> dict[str, Any]:
        row = self.store.get(eid)
        if row is None:
            raise ApiError(404, "not_found", "no such enrollment")
        try:
            csr = check_csr(str(body.get("csr", "")))
        except CsrError as err:
            raise ApiError(400, "csr_refused", str(err)) from None
        self.devices.check_grant(eid, authorization)  # the signed-in device, if any
        self._redeem(row, str(body.get("code", "")))
        try:
            self.lifecycle.check_card(row.piv_auth_cert)  # still good at issuance?
            cert = self._sign(row, csr)
        except BaseException:
            self.store.set_status(eid, "pending", old="issuing")
            raise
        serial = serial_hex(cert.serial_number)  # as OpenSSL prints it
        self.lifecycle.record_issued(row, serial, cert)  # with its notice, in one transaction
        log.info("enrollment %s: derived certificate %s issued", eid, serial)
        pem = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (cert, self.issuing_ca)]
        return {"certificate": pem[0], "chain": pem, "serial": serial}

    def _redeem(self, row: Enrollment, code: str) -> None:
        """Spend one attempt, compare in constant time, then claim the enrollment once."""
        if row.status != "pending":
            raise ApiError(409, "code_used", "the activation code was already used")
        if row.code_expires_at <= time.time():
            raise ApiError(410, "code_expired", "the activation code has expired")
        if not self.store.spend_attempt(row.id):
            raise ApiError(429, "code_locked", "no attempts left, expired or already used")
        expected = activation.activation_code(
            self.hsm, self.config.activation_key, row.id, row.code_issue
        )
        if not activation.codes_equal(expected, code):
            raise ApiError(403, "code_wrong", "wrong activation code")
        # The cap is checked in the same step that claims the enrollment: servers
        # issuing at once for one cardholder cannot all see room under it.
        cap = self.config.max_credentials_per_cardholder
        claim = self.store.claim_for_issuance(row.id, row.fasc_n, cap)
        if claim == "cap":
            raise ApiError(409, "too_many_credentials", TOO_MANY)
        if claim != "claimed":
            raise ApiError(409, "code_used", "the activation code was already used")

    def _sign(self, row: Enrollment, csr: x509.CertificateSigningRequest) -> x509.Certificate:
        piv_cert = x509.load_der_x509_certificate(row.piv_auth_cert)
        profile = DerivedProfile(
            subject=piv_cert.subject,
            card_uuid=row.card_uuid,
            piv_auth_not_after=piv_cert.not_valid_after_utc,
            policy_oid=self.config.policy_oid,
            validity=dt.timedelta(days=self.config.derived_validity_days),
            ca_issuers_url=self.config.ca_issuers_url,
            ocsp_url=self.config.ocsp_url,
            crl_url=self.config.crl_url,
        )
        now = dt.datetime.now(dt.UTC)
        return build_derived_certificate(csr, profile, self.issuing_ca, self.ca_key(), now)

    # --- administration ---

    def list_by_fasc_n(self, fasc_n: str) -> list[dict[str, Any]]:
        if not (fasc_n.isdigit() and len(fasc_n) == 32):
            raise ApiError(400, "bad_request", "fasc_n must be the 32 FASC-N digits")
        return [self.describe(e) for e in self.store.by_fasc_n(fasc_n)]

    def revoke(self, eid: str) -> dict[str, Any]:
        if self.store.get(eid) is None:
            raise ApiError(404, "not_found", "no such enrollment")
        self.lifecycle.revoke(eid, REASON_ADMIN, "revoked by an administrator")
        row = self.store.get(eid)
        assert row is not None
        return self.describe(row)

    @staticmethod
    def describe(e: Enrollment) -> dict[str, Any]:
        """An enrollment as JSON: no certificates, no code."""
        return {
            "enrollment_id": e.id, "fasc_n": e.fasc_n, "card_uuid": e.card_uuid,
            "subject": e.subject, "status": e.status, "created_at": e.created_at,
            "derived_serial": e.derived_serial, "issued_at": e.issued_at,
            "revoked_at": e.revoked_at,
        }  # fmt: skip
