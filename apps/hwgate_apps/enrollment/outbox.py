"""Transactional outbox: notices are written with the event and delivered by a worker.

Why: a mail server that is down, slow or refusing must never fail or repeat an
issuance. The notice row is inserted in the same database transaction that
marks the certificate issued (or revoked): both commit or neither does. The
worker then delivers due rows, outside any request:

- claim a row with a conditional UPDATE (attempts + 1, next attempt pushed past
  a lease), so two workers (two server instances) do not send it at once;
- send it; on success mark it sent, on failure record the error and retry with
  exponential backoff (``outbox_retry`` seconds doubling, at most an hour).

Delivery is at-least-once: a crash between the SMTP server's acceptance and
"mark sent" (or a lease that ran out mid-send) sends the message again, with
the same Message-ID and bytes, so the duplicate is detectable. Nothing is ever
given up on; ``attempts`` and ``last_error`` show what is stuck.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

from hwgate_apps.enrollment import lifestore, notify

if TYPE_CHECKING:
    from hwgate_apps.enrollment.config import EnrollmentConfig
    from hwgate_apps.enrollment.store import Run, Store

log = logging.getLogger(__name__)
LEASE = 60.0  # seconds a claimed row is left to its sender
MAX_BACKOFF = 3600.0


def queue(
    run: Run, config: EnrollmentConfig, *, kind: str, eid: str, recipient: str,
    subject: str, body: str,
) -> str:  # fmt: skip
    """Insert one notice inside the caller's transaction; its Message-ID."""
    now = time.time()
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    message_id, message = notify.compose(config, to=recipient, subject=subject, body=body,
                                         when=when)  # fmt: skip
    row = lifestore.OutboxRow(
        id=str(uuid.uuid4()), message_id=message_id, kind=kind, enrollment_id=eid,
        recipient=recipient, message=message, created_at=now, attempts=0,
        next_attempt_at=now, sent_at=None, last_error=None,
    )  # fmt: skip
    lifestore.add_outbox(run, row)
    return message_id


def deliver_due(store: Store, config: EnrollmentConfig) -> int:
    """Try every due notice once; how many were sent."""
    sent = 0
    now = time.time()
    for row in lifestore.due_outbox(store, now):
        if not lifestore.claim_outbox(store, row, now + LEASE):
            continue
        try:
            notify.send(config, row.recipient, row.message)
        except (OSError, notify.smtplib.SMTPException) as err:
            delay = min(config.outbox_retry * 2**row.attempts, MAX_BACKOFF)
            lifestore.outbox_failed(store, row.id, f"{type(err).__name__}: {err}", now + delay)
            log.warning("notice %s to %s not sent (attempt %d): %s", row.message_id,
                        row.recipient, row.attempts + 1, err)  # fmt: skip
            continue
        lifestore.outbox_sent(store, row.id)
        sent += 1
        log.info("notice %s (%s) sent to %s", row.message_id, row.kind, row.recipient)
    return sent


class OutboxWorker:
    """A daemon thread that delivers due notices every ``outbox_interval`` and on ``kick()``."""

    def __init__(self, store: Store, config_of: object) -> None:
        self.store = store
        self._config_of = config_of  # () -> EnrollmentConfig: the service's current config
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            config: EnrollmentConfig = self._config_of()  # type: ignore[operator]
            try:
                deliver_due(self.store, config)
            except Exception:  # a database hiccup must not end the worker
                log.exception("outbox round failed")
            self._wake.wait(config.outbox_interval)
            self._wake.clear()
