"""The derived-credential flow end to end through the kiosk API (no browser).

Kiosk backend HTTP calls (PIN, request), the enrollment server, the phone
simulator; the issued certificate is checked against the card it came from.
"""

from __future__ import annotations

import datetime as dt

import pytest
from apps_support import (
    PIN,
    enroll_post,
    enrollments_of,
    fascn_digits,
    kiosk_client,
    kiosk_post,
    on,
    wait_screen,
)
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hwgate.certfmt import serial_hex
from hwgate_apps.enrollment.config import POLICY_DERIVED_PIV_AUTH
from hwgate_apps.phone.wallet import activate, parse_payload
from hwgate_apps.stack import Stack
from hwgate_testbed.paths import vpcd_reader

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)


def _kiosk_to_qr(stack: Stack) -> dict[str, object]:
    pin_screen = wait_screen(stack, on("pin"))
    assert pin_screen["name"].startswith("alice")
    assert pin_screen["retries_left"] == 3
    ready = kiosk_post(stack, "/api/pin", {"pin": PIN}).json()
    assert ready["screen"] == "ready", ready
    qr = kiosk_post(stack, "/api/request").json()
    assert qr["screen"] == "qr", qr
    return qr


def test_card_pin_qr_phone_issues_a_derived_credential(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    with kiosk_client(stack) as client:
        info = client.get_card_info(R0)
    piv_auth = info.certificates[0].summary
    qr = _kiosk_to_qr(stack)
    assert str(qr["qr_svg"]).startswith("<svg") and len(str(qr["code"])) == 8

    payload = str(qr["qr_payload"])
    assert f"code={qr['code']}" in payload
    anchor = x509.load_pem_x509_certificate(stack.paths.pki_cert("issuing-ca").read_bytes())
    cred = activate(parse_payload(payload), anchor, stack.tls_ca)

    cert = cred.certificate
    piv_auth_subject = piv_auth.subject
    assert cert.subject.rfc4514_string() == piv_auth_subject
    assert cred.policy_oids == [POLICY_DERIVED_PIV_AUTH]
    assert cred.uuid_uri == f"urn:uuid:{info.chuid.guid}"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    piv_not_after = piv_auth.not_after_time.ToDatetime(dt.UTC)
    assert cert.not_valid_after_utc <= piv_not_after
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=3 * 365)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cred.key.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    anchor_ski = anchor.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == anchor_ski.digest

    issued = [e for e in _listing(stack, fascn_digits(info.chuid)) if e["status"] == "issued"]
    assert serial_hex(cert.serial_number) in [e["derived_serial"] for e in issued]
    assert issued[-1]["card_uuid"] == info.chuid.guid

    # Removing the card ends the kiosk session and returns to the start.
    cards.remove(0)  # type: ignore[attr-defined]
    assert wait_screen(stack, on("insert"))["name"] == ""


def _listing(stack: Stack, fasc_n: str) -> list[dict[str, object]]:
    response = enrollments_of(stack, fasc_n)
    assert response.status_code == 200, response.text
    return response.json()["enrollments"]  # type: ignore[no-any-return]


def test_wrong_pin_shows_retries_left(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    wait_screen(stack, on("pin"))
    wrong = kiosk_post(stack, "/api/pin", {"pin": "654321"}).json()
    assert (wrong["screen"], wrong["retries_left"]) == ("pin", 2)
    assert "2 tries left" in wrong["message"]
    assert kiosk_post(stack, "/api/pin", {"pin": "12"}).status_code == 400
    right = kiosk_post(stack, "/api/pin", {"pin": PIN}).json()  # resets the card's counter
    assert right["screen"] == "ready"


def test_card_removed_mid_flow_resets_the_kiosk(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    wait_screen(stack, on("pin"))
    assert kiosk_post(stack, "/api/pin", {"pin": PIN}).json()["screen"] == "ready"
    cards.remove(0)  # type: ignore[attr-defined]
    screen = wait_screen(stack, on("insert"))
    assert screen["name"] == "" and screen["retries_left"] is None
    refused = kiosk_post(stack, "/api/request")
    assert refused.status_code == 409 and refused.json()["error"] == "wrong_screen"
    # The kiosk's session was closed: the reader is free for the next cardholder.
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    wait_screen(stack, on("pin"))
    with kiosk_client(stack) as client:
        assert not next(r for r in client.list_readers() if r.name == R0).session_held


def test_enrollment_list_needs_a_fasc_n(stack: Stack) -> None:
    response = enrollments_of(stack, "not-a-fascn")
    assert response.status_code == 400
    assert enroll_post(stack, "/enrollments", {"challenge_id": "x"}).status_code == 403
