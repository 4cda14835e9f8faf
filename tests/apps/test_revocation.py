"""Revocation at issuance: revoked, expired, unknown-issuer and unverifiable cards refused.

Real stack (hwgated, enrollment server, kiosk) on the bed; the bed's PIV CA
publishes its CRL in DIR/pki/piv-ca.crl and `hwgate-testbed revoke` puts a
card on it. Each test that revokes uses a card made for it (undone after).
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from apps_support import PIN, enroll, enroll_post, kiosk_post, on, proof_for, wait_screen
from cryptography.hazmat.primitives.asymmetric import ec
from life_support import life_stack, made_card, service_of

from hwgate_apps.phone.wallet import make_csr
from hwgate_apps.stack import Stack
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard.piv_ca import ensure_piv_ca

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)


@pytest.fixture(scope="module")
def stack(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with life_stack(testbed, tmp_path_factory.mktemp("revocation")) as running:
        yield running


def _revoke_cli(stack: Stack, name: str, *more: str) -> None:
    """`hwgate-testbed revoke --card NAME` as an operator runs it."""
    argv = [sys.executable, "-m", "hwgate_testbed.cli", "revoke", "--dir",
            str(stack.paths.root), "--card", name, *more]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "piv-ca.crl" in done.stdout


def _refusal(stack: Stack) -> tuple[int, str, str]:
    response = enroll_post(stack, "/enrollments", proof_for(stack, R0))
    body = response.json()
    return response.status_code, body.get("error", ""), body.get("message", "")


def test_revoked_card_is_refused_with_the_reason_on_the_kiosk(
    stack: Stack, cards: object, testbed: object
) -> None:
    with made_card(stack.paths, cards, "lc-revoked") as card:
        _revoke_cli(stack, card.name, "--reason", "key_compromise")
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        status, error, message = _refusal(stack)
        assert (status, error) == (403, "piv_cert_revoked")
        assert "revoked" in message and "key compromise" in message
        # Through the kiosk: the same reason, in words, on the page.
        wait_screen(stack, on("pin"))
        assert kiosk_post(stack, "/api/pin", {"pin": PIN}).json()["screen"] == "ready"
        screen = kiosk_post(stack, "/api/request").json()
        assert screen["screen"] == "error", screen
        assert "revoked" in screen["message"] and "key compromise" in screen["message"]


def test_card_revoked_between_enrollment_and_redemption_gets_nothing(
    stack: Stack, cards: object
) -> None:
    with made_card(stack.paths, cards, "lc-late") as card:
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        e = enroll(stack, R0)  # the card is good now: a code is shown
        _revoke_cli(stack, card.name)
        csr = make_csr(ec.generate_private_key(ec.SECP256R1()))
        body = {"csr": csr, "code": e["code"]}
        response = enroll_post(stack, f"/enrollments/{e['enrollment_id']}/certificate", body)
        assert (response.status_code, response.json()["error"]) == (403, "piv_cert_revoked")
        row = service_of(stack).store.get(e["enrollment_id"])
        assert row is not None and row.derived_cert is None and row.status == "pending"


def test_expired_card_is_refused(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice", profile="expired-9a")  # type: ignore[attr-defined]
    status, error, message = _refusal(stack)
    assert (status, error) == (403, "piv_cert_expired")
    assert "expired on" in message


def test_card_from_an_unknown_issuer_is_refused(
    stack: Stack, cards: object, tmp_path: object
) -> None:
    stranger_ca = ensure_piv_ca(tmp_path / "other-pki")  # type: ignore[operator]
    with made_card(stack.paths, cards, "lc-stranger", ca=stranger_ca) as card:
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        status, error, message = _refusal(stack)
    assert (status, error) == (403, "piv_issuer_unknown")
    assert "not a trusted PIV issuer" in message


def test_unreachable_crl_refuses_and_the_crl_over_http_is_read(stack: Stack, cards: object) -> None:
    service = service_of(stack)
    before = service.config
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(stack.paths.pki)
    )
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            service.config = dataclasses.replace(before, piv_crl_url=f"{url}/no-such.crl")
            status, error, message = _refusal(stack)
            assert (status, error) == (403, "piv_revocation_unknown")
            assert "HTTP 404" in message
            service.config = dataclasses.replace(before, piv_crl_url=f"{url}/piv-ca.crl")
            response = enroll_post(stack, "/enrollments", proof_for(stack, R0))
            assert response.status_code == 201, response.text
        finally:
            service.config = before
            httpd.shutdown()
            thread.join(timeout=10)
