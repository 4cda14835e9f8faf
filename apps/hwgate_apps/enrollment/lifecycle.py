"""The derived credential's lifecycle: card checks, revocation, CRL, notices.

SP 800-157 §2.2: a derived credential must not outlive the PIV card it was
derived from. :meth:`Lifecycle.run_once` re-checks the PIV Authentication
certificate of every issued derived credential (:mod:`.revocation`); a card
that is revoked or expired gets its derived certificates revoked, a new
issuing-CA CRL signed in the HSM (:mod:`.crl`) and a notice queued for the
cardholder (:mod:`.outbox`). A card whose status cannot be established now
(CRL unreachable) is left alone and reported: the next run tries again.

It runs as ``hwgate-enrollment lifecycle --config FILE`` (cron, a systemd
timer) and, when ``lifecycle_interval`` > 0, as a thread of the server.

CRLReason of a derived certificate: ``privilege_withdrawn`` when its card was
revoked (the card's own reason, e.g. keyCompromise, is about the card's key,
not the phone's), ``cessation_of_operation`` when the card expired,
``unspecified`` (omitted from the CRL entry) when an administrator revoked it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hwgate_apps.enrollment import lifestore, notify, outbox
from hwgate_apps.enrollment.crl import CrlPublisher
from hwgate_apps.enrollment.revocation import CardRefused, CardStatus, PivValidator
from hwgate_apps.web import ApiError

if TYPE_CHECKING:
    from hwgate_apps.enrollment.service import EnrollmentService
    from hwgate_apps.enrollment.store import Enrollment, Run

log = logging.getLogger(__name__)

REASON_CARD_REVOKED = "privilege_withdrawn"
REASON_CARD_EXPIRED = "cessation_of_operation"
REASON_ADMIN = "unspecified"


class Lifecycle:
    """Lifecycle duties of one enrollment service (shares its store, config and HSM key)."""

    def __init__(self, service: EnrollmentService, anchors: list[x509.Certificate]) -> None:
        self.service = service
        self.anchors = anchors
        self._validator: tuple[tuple[Any, ...], PivValidator] | None = None
        self.crl = CrlPublisher(service.store, service.issuing_ca, service.ca_key,
                                dt.timedelta(hours=service.config.issuing_crl_hours))  # fmt: skip
        self.worker = outbox.OutboxWorker(service.store, lambda: self.service.config)
        self._stop = threading.Event()
        self._periodic: threading.Thread | None = None

    # --- card checks (issuance) ---

    @property
    def validator(self) -> PivValidator:
        """Made from the current config (tests change it on a running service)."""
        c = self.service.config
        key = (c.piv_crl_url, c.piv_ocsp_url, c.require_revocation_status, c.crl_cache_seconds)
        if self._validator is None or self._validator[0] != key:
            self._validator = (key, PivValidator(
                self.anchors, crl_url=c.piv_crl_url, ocsp_url=c.piv_ocsp_url,
                require_status=c.require_revocation_status, cache_seconds=c.crl_cache_seconds,
            ))  # fmt: skip
        return self._validator[1]

    def check_card(self, certificate_der: bytes) -> CardStatus:
        """The card's certificate is good now, or ApiError 403 with the precise reason."""
        try:
            cert = x509.load_der_x509_certificate(certificate_der)
        except ValueError:
            raise ApiError(403, "proof_refused", "the certificate is not DER X.509") from None
        try:
            return self.validator.check(cert)
        except CardRefused as err:
            log.info("PIV certificate %s refused: %s", cert.subject.rfc4514_string(), err.message)
            raise ApiError(403, err.error, err.message) from None

    # --- events ---

    def remember_contact(self, eid: str, cert: x509.Certificate, offered: Any) -> None:
        address = notify.email_of(cert, offered)
        if address:
            lifestore.set_contact(self.service.store, eid, address)

    def _notice(self, eid: str, kind: str, subject: str, body: str) -> Any:
        """A ``then`` for the store that queues the notice (None if nobody to tell)."""
        config = self.service.config
        recipient = lifestore.contact(self.service.store, eid)
        if not (config.smtp_host and recipient):
            return None

        def then(run: Run) -> None:
            outbox.queue(run, config, kind=kind, eid=eid, recipient=recipient,
                         subject=subject, body=body)  # fmt: skip

        return then

    def record_issued(self, row: Enrollment, serial: str, cert: x509.Certificate) -> None:
        """Mark issued and queue the notice, in one transaction."""
        subject, body = notify.issued_text(
            row.subject, serial, f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        self.service.store.record_issued(
            row.id, serial, der, self._notice(row.id, "issued", subject, body)
        )
        self.worker.kick()

    def revoke(self, eid: str, reason: str, why: str, *, publish: bool = True) -> bool:
        """Revoke the derived credential once: revocation row, notice, then a new CRL."""
        row = self.service.store.get(eid)
        if row is None:
            return False
        notice = None
        if row.derived_serial:
            text = notify.revoked_text(row.subject, row.derived_serial, why)
            notice = self._notice(eid, "revoked", *text)

        def then(run: Run) -> None:
            lifestore.add_revocation(run, eid, row.derived_serial or "", reason)
            if notice is not None:
                notice(run)

        done = self.service.store.revoke(eid, then)
        if done and publish and row.derived_serial:
            self.crl.publish()
        self.worker.kick()
        return done

    # --- the job ---

    def run_once(self) -> dict[str, Any]:
        """Check every issued credential's card; revoke what must go; one new CRL if any did."""
        revoked: list[dict[str, str]] = []
        unknown: list[dict[str, str]] = []
        issued = self.service.store.issued()
        for row in issued:
            cert = x509.load_der_x509_certificate(row.piv_auth_cert)
            try:
                self.validator.check(cert)
            except CardRefused as err:
                if err.error == "piv_cert_revoked":
                    reason = REASON_CARD_REVOKED
                elif err.error == "piv_cert_expired":
                    reason = REASON_CARD_EXPIRED
                else:  # we could not tell (or the trust anchors changed): not our call
                    unknown.append({"enrollment_id": row.id, "error": err.error,
                                    "message": err.message})  # fmt: skip
                    continue
                if self.revoke(row.id, reason, err.message, publish=False):
                    revoked.append({"enrollment_id": row.id, "serial": row.derived_serial or "",
                                    "reason": reason, "card": err.error})  # fmt: skip
        crl_number = None
        if revoked:
            self.crl.publish()
        latest = lifestore.latest_crl(self.service.store, "issuing-ca")
        if latest is not None:
            crl_number = latest[0]
        log.info("lifecycle: %d checked, %d revoked, %d unknown", len(issued), len(revoked),
                 len(unknown))  # fmt: skip
        return {"checked": len(issued), "revoked": revoked, "unknown": unknown,
                "crl_number": crl_number}  # fmt: skip

    # --- threads of the server ---

    def start(self) -> None:
        """The outbox worker, and the periodic job when ``lifecycle_interval`` > 0."""
        self.worker.start()
        if self.service.config.lifecycle_interval > 0:
            self._periodic = threading.Thread(target=self._loop, name="lifecycle", daemon=True)
            self._periodic.start()

    def stop(self) -> None:
        self._stop.set()
        self.worker.stop()
        if self._periodic is not None:
            self._periodic.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.service.config.lifecycle_interval):
            try:
                self.run_once()
            except Exception:  # the HSM or database may be away for a while
                log.exception("lifecycle run failed")


def main(argv: list[str] | None = None) -> int:
    """``hwgate-enrollment lifecycle --config FILE``: one run, a JSON summary on stdout."""
    from hwgate_apps.enrollment.config import load_config
    from hwgate_apps.enrollment.server import connect_hwgate
    from hwgate_apps.enrollment.service import EnrollmentService

    parser = argparse.ArgumentParser(prog="hwgate-enrollment lifecycle", description=main.__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--no-mail", action="store_true",
                        help="queue notices but leave sending them to the server")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(args.config)
    with connect_hwgate(config) as hsm:
        service = EnrollmentService(config, hsm)
        summary = service.lifecycle.run_once()
        if not args.no_mail and config.smtp_host:
            summary["notices_sent"] = outbox.deliver_due(service.store, config)
        service.store.close()
    json.dump(summary, sys.stdout)
    print()
    return 0
