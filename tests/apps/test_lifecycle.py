"""Lifecycle link: a PIV card revoked after issuance takes its derived credentials with it.

`hwgate-testbed revoke` puts the card on the bed's PIV CRL; `hwgate-enrollment
lifecycle` (a process, as cron would run it) revokes the derived certificate;
the issuing CA's CRL, signed in the HSM, is served by the enrollment server and
checked with OpenSSL; the phone sees its own status; the cardholder gets mail.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apps_support import enroll
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from life_support import (
    SmtpSink,
    made_card,
    mailing_stack,
    running_smtp,
    service_of,
    write_config_toml,
)

from hwgate.certfmt import serial_hex
from hwgate_apps.phone.main import main as phone_main
from hwgate_apps.phone.wallet import Credential, activate, parse_payload
from hwgate_apps.stack import Stack
from hwgate_apps.web import tls_context
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard.piv_ca import ensure_piv_ca
from hwgate_testbed.vcard.profile import CardProfile, Slot
from hwgate_testbed.vcard.provision import issue_certificate

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    with running_smtp() as sink:
        yield sink


@pytest.fixture(scope="module")
def stack(
    testbed: object, smtp: SmtpSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with mailing_stack(testbed, smtp, tmp_path_factory.mktemp("lifecycle")) as running:
        yield running


def _issue(stack: Stack) -> Credential:
    e = enroll(stack, R0)
    anchor = x509.load_pem_x509_certificate(stack.paths.pki_cert("issuing-ca").read_bytes())
    return activate(parse_payload(e["qr_payload"]), anchor, stack.tls_ca)


def _save(cred: Credential, path: Path) -> Path:
    path.write_bytes(cred.certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _openssl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *argv], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def test_revoked_card_revokes_its_derived_credential_and_the_crl_lists_it(
    stack: Stack, cards: object, smtp: SmtpSink, tmp_path: Path
) -> None:
    service = service_of(stack)
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    bystander = _issue(stack)  # alice's card stays good: her credential must too
    cards.remove(0)  # type: ignore[attr-defined]
    with made_card(stack.paths, cards, "lc-life") as card:
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        doomed = _issue(stack)
        doomed_serial = serial_hex(doomed.certificate.serial_number)
        smtp.wait_for(lambda _: len(smtp.to(card.email)) == 1)  # the issuance notice

        revoke = [sys.executable, "-m", "hwgate_testbed.cli", "revoke", "--dir",
                  str(stack.paths.root), "--card", card.name]  # fmt: skip
        assert subprocess.run(revoke, capture_output=True, timeout=60).returncode == 0

        config = write_config_toml(service, tmp_path / "enrollment.toml")
        job = subprocess.run(
            [sys.executable, "-m", "hwgate_apps.enrollment", "lifecycle", "--config", str(config)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert job.returncode == 0, job.stderr
        summary = json.loads(job.stdout)
        assert [r["serial"] for r in summary["revoked"]] == [doomed_serial]
        assert summary["revoked"][0]["reason"] == "privilege_withdrawn"
        assert summary["unknown"] == []

        # The store, then the published CRL (DER from the server, signed by issuing-ca).
        row = service.store.get(summary["revoked"][0]["enrollment_id"])
        assert row is not None and (row.status, row.derived_serial) == ("revoked", doomed_serial)
        got = httpx.get(f"{stack.enrollment_url}/crl/issuing-ca.crl",
                        verify=tls_context(stack.tls_ca), timeout=30)  # fmt: skip
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/pkix-crl"
        crl_der = tmp_path / "issuing-ca.crl"
        crl_der.write_bytes(got.content)
        anchor = stack.paths.pki_cert("issuing-ca")
        text = _openssl("crl", "-inform", "DER", "-in", str(crl_der), "-noout", "-text",
                        "-CAfile", str(anchor))  # fmt: skip
        assert text.returncode == 0, text.stderr
        assert "verify OK" in text.stderr + text.stdout
        assert f"Serial Number: {doomed_serial}" in text.stdout
        assert serial_hex(bystander.certificate.serial_number) not in text.stdout
        assert "Privilege Withdrawn" in text.stdout

        crl_pem = tmp_path / "issuing-ca-crl.pem"
        conv = _openssl("crl", "-inform", "DER", "-in", str(crl_der), "-out", str(crl_pem))
        assert conv.returncode == 0, conv.stderr
        check = ["verify", "-crl_check", "-CAfile", str(anchor), "-CRLfile", str(crl_pem)]
        revoked = _openssl(*check, str(_save(doomed, tmp_path / "doomed.pem")))
        assert revoked.returncode != 0
        assert "certificate revoked" in revoked.stdout + revoked.stderr
        good = _openssl(*check, str(_save(bystander, tmp_path / "bystander.pem")))
        assert good.returncode == 0, good.stdout + good.stderr

        # The phone asks for itself (the certificate's CRL DP: the server's CRL).
        phone = ["status", "--anchor", str(anchor), "--tls-ca", stack.tls_ca, "--cert"]
        assert phone_main([*phone, str(tmp_path / "doomed.pem")]) == 3
        assert phone_main([*phone, str(tmp_path / "bystander.pem")]) == 0

        # The cardholder is told (sent by the job itself or the server's worker).
        mail = smtp.wait_for(lambda _: any("revoked" in m["Subject"] for m in smtp.to(card.email)))
        notice = next(m for m in mail if m["To"] == card.email and "revoked" in m["Subject"])
        assert doomed_serial in notice.get_content()

        # A second run finds nothing more to do.
        again = subprocess.run(job.args, capture_output=True, text=True, timeout=120, check=False)
        assert json.loads(again.stdout)["revoked"] == []


def test_expired_card_certificate_revokes_with_cessation_of_operation(
    stack: Stack, cards: object
) -> None:
    service = service_of(stack)
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    cred = _issue(stack)
    serial = serial_hex(cred.certificate.serial_number)
    [row] = [r for r in service.store.issued() if r.derived_serial == serial]
    # Time passes: the card's PIV Authentication certificate (the one on record) expires.
    profile = CardProfile.load(stack.paths.card_dir("alice"))
    ca = ensure_piv_ca(stack.paths.pki)
    end = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    expired = issue_certificate(profile, Slot.AUTHENTICATION,
                                profile.slots[Slot.AUTHENTICATION].key, ca,
                                end - dt.timedelta(days=365), end)  # fmt: skip
    service.store._run(
        "UPDATE enrollments SET piv_auth_cert = ? WHERE id = ?",
        (expired.public_bytes(serialization.Encoding.DER), row.id),
    )
    summary = service.lifecycle.run_once()  # the server's own periodic job, run once here
    assert [(r["serial"], r["reason"]) for r in summary["revoked"]] == [
        (serial, "cessation_of_operation")
    ]
    crl = x509.load_der_x509_crl(service.lifecycle.crl.current())
    entry = crl.get_revoked_certificate_by_serial_number(cred.certificate.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.cessation_of_operation
