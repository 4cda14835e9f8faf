"""Notices by e-mail through a real SMTP server (aiosmtpd), and the outbox under an outage.

The cardholder's address comes from the card's PIV Authentication certificate
(SAN rfc822Name) or, failing that, from the enrollment request. An SMTP server
that is down does not fail the issuance; the notice waits in the outbox and
arrives once the server is back, exactly once per Message-ID.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps_support import enroll_post, proof_for
from cryptography.hazmat.primitives.asymmetric import ec
from life_support import SmtpSink, made_card, mailing_stack, running_smtp, service_of

from hwgate_apps.devpki import web_certificate
from hwgate_apps.enrollment import lifestore
from hwgate_apps.enrollment.store import Store
from hwgate_apps.phone.wallet import make_csr
from hwgate_apps.stack import Stack
from hwgate_testbed.paths import vpcd_reader

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)
OUTBOX_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    with running_smtp() as sink:
        yield sink


@pytest.fixture(scope="module")
def stack(
    testbed: object, smtp: SmtpSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with mailing_stack(testbed, smtp, tmp_path_factory.mktemp("notify")) as running:
        yield running


def _issue(stack: Stack, email: str | None = None) -> tuple[str, str]:
    """Enroll the card in R0 and redeem the code: (enrollment id, serial)."""
    body = proof_for(stack, R0)
    if email:
        body["email"] = email
    e = enroll_post(stack, "/enrollments", body)
    assert e.status_code == 201, e.text
    eid, code = e.json()["enrollment_id"], e.json()["code"]
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()))
    got = enroll_post(stack, f"/enrollments/{eid}/certificate", {"csr": csr, "code": code})
    assert got.status_code == 201, got.text
    return eid, got.json()["serial"]


def test_issuance_and_revocation_are_mailed_to_the_cards_address(
    stack: Stack, cards: object, smtp: SmtpSink
) -> None:
    with made_card(stack.paths, cards, "lc-mail") as card:
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        eid, serial = _issue(stack)
        smtp.wait_for(lambda _: len(smtp.to(card.email)) == 1)
        [issued] = smtp.to(card.email)
        assert issued["From"] == "hwgate enrollment <enrollment@hwgate.test>"
        assert "issued" in issued["Subject"]
        assert serial in issued.get_content() and issued["Message-ID"]

        revoked = enroll_post(stack, f"/enrollments/{eid}/revoke", {}, as_="admin")
        assert revoked.json()["status"] == "revoked"
        smtp.wait_for(lambda _: len(smtp.to(card.email)) == 2)
        notice = smtp.to(card.email)[1]
        assert "revoked" in notice["Subject"] and serial in notice.get_content()
        assert notice["Message-ID"] != issued["Message-ID"]


def test_address_from_the_enrollment_record_when_the_card_has_none(
    stack: Stack, cards: object, smtp: SmtpSink
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]  (no rfc822Name on alice's card)
    address = f"alice-{time.monotonic_ns()}@hwgate.test"
    _, serial = _issue(stack, email=address)
    smtp.wait_for(lambda _: len(smtp.to(address)) == 1)
    assert serial in smtp.to(address)[0].get_content()


def test_starttls_is_used_when_configured(stack: Stack, cards: object, tmp_path: Path) -> None:
    cert, key = web_certificate(stack.paths.pki, tmp_path / "smtp-tls")  # for 127.0.0.1
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    secure = SmtpSink(tls=context)  # refuses MAIL before STARTTLS
    secure.start()
    service = service_of(stack)
    before = service.config
    try:
        service.config = dataclasses.replace(
            before, smtp_port=secure.port, smtp_starttls=True, smtp_cafile=stack.tls_ca
        )
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        address = f"alice-tls-{time.monotonic_ns()}@hwgate.test"
        _, serial = _issue(stack, email=address)
        secure.wait_for(lambda _: len(secure.to(address)) == 1)
        assert serial in secure.to(address)[0].get_content()
    finally:
        service.config = before
        secure.stop()


def test_outbox_row_is_claimed_by_one_worker_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "outbox.sqlite3")
    row = lifestore.OutboxRow("o1", "<m1@x>", "k", "e1", "a@x", b"msg", 1.0, 0, 5.0, None, None)
    with store.transaction() as tx:
        lifestore.add_outbox(tx.run, row)
    [due] = lifestore.due_outbox(store, now=10.0)
    assert lifestore.claim_outbox(store, due, lease_until=70.0)
    assert not lifestore.claim_outbox(store, due, lease_until=70.0)  # the other instance
    assert lifestore.due_outbox(store, now=10.0) == []  # leased: not due until 70
    [again] = lifestore.due_outbox(store, now=71.0)  # lease ran out unsent: retried
    assert again.attempts == 1 and again.message_id == "<m1@x>"
    store.close()


def _wait_outbox(stack: Stack, eid: str, ready: object, what: str) -> lifestore.OutboxRow:
    deadline = time.monotonic() + OUTBOX_TIMEOUT
    while True:  # the worker's own record, polled with a deadline
        rows = lifestore.outbox_of(service_of(stack).store, eid)
        if rows and ready(rows[0]):  # type: ignore[operator]
            return rows[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox never showed {what}: {rows}")
        time.sleep(0.05)


def test_smtp_outage_does_not_fail_issuance_and_the_mail_arrives_later(
    stack: Stack, cards: object, smtp: SmtpSink
) -> None:
    with made_card(stack.paths, cards, "lc-outage") as card:
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        smtp.stop()
        try:
            eid, serial = _issue(stack)  # 201 although no mail server answers
            failed = _wait_outbox(stack, eid, lambda r: r.attempts >= 1 and r.last_error,
                                  "a failed attempt")  # fmt: skip
            assert failed.sent_at is None
            assert smtp.to(card.email) == []
        finally:
            smtp.start()
        smtp.wait_for(lambda _: len(smtp.to(card.email)) == 1)
        sent = _wait_outbox(stack, eid, lambda r: r.sent_at is not None, "sent")
        [mail] = smtp.to(card.email)
        assert str(mail["Message-ID"]).strip() == sent.message_id and serial in mail.get_content()
        # Issued once: one enrollment, one certificate, one notice.
        row = service_of(stack).store.get(eid)
        assert row is not None and row.status == "issued" and row.derived_serial == serial
        assert [r.kind for r in lifestore.outbox_of(service_of(stack).store, eid)] == ["issued"]
