"""RFC 8628 device sign-in on the real stack: enrollment server, kiosk, hwgated,
virtual card, and the phone simulator.

The module's stack polls fast (interval 1 s) and lets many user-code attempts
through (the rate-limit test lowers the limits itself); waiting out an interval or
an expiry is done by ageing the row, never by sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from apps_support import PIN, enroll, enroll_post, kiosk_post, on, wait_screen
from cryptography import x509

import hwgate
from hwgate_apps.enrollment.service import EnrollmentService
from hwgate_apps.kiosk.controller import Kiosk
from hwgate_apps.kiosk.enroll_client import EnrollmentClient
from hwgate_apps.phone import device_flow
from hwgate_apps.phone.wallet import ActivationError, activate, parse_payload
from hwgate_apps.stack import Stack
from hwgate_apps.web import ApiError, tls_context
from hwgate_testbed.paths import vpcd_reader

pytestmark = pytest.mark.testbed
GRANT = "urn:ietf:params:oauth:grant-type:device_code"
R0 = vpcd_reader(0)
USER_CODE = re.compile(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}")


@pytest.fixture(autouse=True)
def fast_device_flow(service: EnrollmentService, stack: Stack) -> Iterator[None]:
    original = service.config
    service.config = dataclasses.replace(
        original, device_poll_interval=1, user_code_attempts_per_client=10_000,
        user_code_attempts_global=10_000,
    )  # fmt: skip
    try:
        yield
    finally:
        service.config = original
        kiosk_post(stack, "/api/device/cancel")  # whatever the test left: back to the start
        wait_screen(stack, on("insert"))


def form_post(stack: Stack, path: str, form: dict[str, str]) -> httpx.Response:
    url = f"{stack.enrollment_url}{path}"
    return httpx.post(url, data=form, verify=tls_context(stack.tls_ca), timeout=30)


def authorize(stack: Stack, **extra: str) -> dict[str, Any]:
    response = form_post(stack, "/device_authorization", {"client_id": "hwgate-phone", **extra})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def token(stack: Stack, device_code: str, client_id: str = "hwgate-phone") -> tuple[int, str]:
    form = {"grant_type": GRANT, "device_code": device_code, "client_id": client_id}
    response = form_post(stack, "/token", form)
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, response.json().get("error", "")


def row_of(service: EnrollmentService, device_code: str) -> Any:
    return service.devices.store.by_device_code(hashlib.sha256(device_code.encode()).digest())


def age(service: EnrollmentService, device_code: str, column: str, value: str) -> None:
    row = row_of(service, device_code)
    service.devices.store._run(
        f"UPDATE device_authorizations SET {column} = {value} WHERE id = ?", (row.id,)
    )


def claim(stack: Stack, user_code: str, kiosk_session: str = "k1") -> httpx.Response:
    return enroll_post(stack, "/device/claim", {"kiosk_session": kiosk_session,
                                                "user_code": user_code})  # fmt: skip


def test_device_authorization_response(stack: Stack, service: EnrollmentService) -> None:
    response = form_post(stack, "/device_authorization",
                         {"client_id": "hwgate-phone", "device_name": "Pixel test"})  # fmt: skip
    assert response.headers["cache-control"] == "no-store"
    got = response.json()
    assert USER_CODE.fullmatch(got["user_code"]), got
    assert got["verification_uri"] == f"{stack.enrollment_url}/device"
    assert (
        got["verification_uri_complete"]
        == f"{got['verification_uri']}?user_code={got['user_code']}"
    )
    assert (got["expires_in"], got["interval"]) == (600, 1)
    assert len(got["device_code"]) >= 43  # 256 random bits
    page = httpx.get(got["verification_uri"], verify=tls_context(stack.tls_ca), timeout=30)
    assert page.status_code == 200 and "I have a code" in page.text
    # Stored as hashes only: neither code is in the row.
    row = row_of(service, got["device_code"])
    assert row.device_name == "Pixel test" and row.status == "pending"
    flat = repr(dataclasses.astuple(row)).encode()
    for secret in (got["device_code"], got["user_code"], got["user_code"].replace("-", "")):
        assert secret.encode() not in flat


@pytest.mark.parametrize(("form", "status", "error"), [
    ({}, 400, "invalid_request"),
    ({"client_id": "nobody"}, 401, "invalid_client"),
    ({"client_id": "hwgate-phone", "scope": "admin"}, 400, "invalid_scope"),
    ({"client_id": "hwgate-phone", "device_name": "x\x00y"}, 400, "invalid_request"),
])  # fmt: skip
def test_device_authorization_refusals(
    stack: Stack, form: dict[str, str], status: int, error: str
) -> None:
    response = form_post(stack, "/device_authorization", form)
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_token_request_refusals(stack: Stack) -> None:
    dc = authorize(stack)["device_code"]
    assert token(stack, "not-a-device-code") == (400, "invalid_grant")
    assert token(stack, dc, client_id="nobody") == (401, "invalid_client")
    cases = [
        ({"device_code": dc, "client_id": "hwgate-phone"}, "invalid_request"),
        ({"grant_type": "authorization_code", "device_code": dc, "client_id": "hwgate-phone"},
         "unsupported_grant_type"),
        ({"grant_type": GRANT, "client_id": "hwgate-phone"}, "invalid_request"),
    ]  # fmt: skip
    for form, error in cases:
        response = form_post(stack, "/token", form)
        assert (response.status_code, response.json()["error"]) == (400, error)
    twice = f"grant_type={GRANT}&device_code={dc}&device_code={dc}&client_id=hwgate-phone"
    url = f"{stack.enrollment_url}/token"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = httpx.post(url, content=twice, headers=headers, verify=tls_context(stack.tls_ca))
    assert response.json()["error"] == "invalid_request"  # RFC 6749 §3.2: each parameter once
    as_json = httpx.post(url, json={"grant_type": GRANT}, verify=tls_context(stack.tls_ca))
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")


def test_pending_then_slow_down_adds_five_seconds(stack: Stack, service: EnrollmentService) -> None:
    # A long interval, so that two requests in a row are "too soon" however loaded the host.
    service.config = dataclasses.replace(service.config, device_poll_interval=30)
    dc = authorize(stack)["device_code"]
    assert token(stack, dc) == (400, "authorization_pending")  # the first poll is never early
    assert token(stack, dc) == (400, "slow_down")  # at once again: too early
    assert row_of(service, dc).poll_interval == 35
    assert token(stack, dc) == (400, "slow_down")  # still early for the new interval
    assert row_of(service, dc).poll_interval == 40
    age(service, dc, "last_poll_at", "last_poll_at - 40")  # as if it had waited 40 s
    assert token(stack, dc) == (400, "authorization_pending")
    assert row_of(service, dc).poll_interval == 40  # the interval stays grown


def test_expired_device_code(stack: Stack, service: EnrollmentService) -> None:
    got = authorize(stack)
    age(service, got["device_code"], "expires_at", "0")
    assert token(stack, got["device_code"]) == (400, "expired_token")
    response = claim(stack, got["user_code"])  # its user code is dead too
    assert (response.status_code, response.json()["error"]) == (404, "user_code_invalid")


def test_user_code_is_single_use_and_checked(stack: Stack) -> None:
    got = authorize(stack)
    wrong = "BBBB-BBBB" if got["user_code"] != "BBBB-BBBB" else "CCCC-CCCC"
    assert (claim(stack, wrong).status_code, claim(stack, wrong).json()["error"]) == (
        404, "user_code_invalid")  # fmt: skip
    assert claim(stack, "12345678").json()["error"] == "user_code_format"
    typed = got["user_code"].lower().replace("-", " ")  # case and separators do not matter
    first = claim(stack, typed)
    assert first.status_code == 200, first.text
    assert first.json()["origin"] == stack.enrollment_url
    again = claim(stack, got["user_code"], kiosk_session="k2")
    assert (again.status_code, again.json()["error"]) == (404, "user_code_invalid")
    assert token(stack, got["device_code"]) == (400, "authorization_pending")


def test_user_code_attempts_are_rate_limited(stack: Stack, service: EnrollmentService) -> None:
    store = service.devices.store
    store._run("DELETE FROM device_code_attempts")
    got = authorize(stack)
    try:
        service.config = dataclasses.replace(service.config, user_code_attempts_per_client=3)
        for _ in range(3):
            assert claim(stack, "BBBB-CCCC").status_code in (404, 200)
        limited = claim(stack, got["user_code"])  # even the right code, once over the limit
        assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
        store._run("DELETE FROM device_code_attempts")
        service.config = dataclasses.replace(service.config, user_code_attempts_per_client=100,
                                             user_code_attempts_global=2)  # fmt: skip
        claim(stack, "BBBB-CCCC")
        claim(stack, "BBBB-CCCC")
        assert claim(stack, got["user_code"]).status_code == 429  # the global limit
    finally:
        store._run("DELETE FROM device_code_attempts")
    assert claim(stack, got["user_code"]).status_code == 200  # the code was not spent


def _kiosk_claims(stack: Stack, text: str) -> httpx.Response:
    assert kiosk_post(stack, "/api/device/start").json()["screen"] == "code"
    return kiosk_post(stack, "/api/device/code", {"user_code": text})


def test_kiosk_refuses_a_code_for_another_origin(stack: Stack, service: EnrollmentService) -> None:
    got = authorize(stack)
    elsewhere = f"https://evil.example:8443/device?user_code={got['user_code']}"
    refused = _kiosk_claims(stack, elsewhere)
    assert (refused.status_code, refused.json()["error"]) == (403, "wrong_origin")
    assert "evil.example" in refused.json()["message"]
    assert row_of(service, got["device_code"]).status == "pending"  # nothing was sent
    # The same code from this server's own link is taken.
    screen = kiosk_post(stack, "/api/device/code", {"user_code": got["verification_uri_complete"]})
    assert screen.json()["screen"] == "device_insert", screen.text
    assert screen.json()["device"]["user_code"] == got["user_code"]


def test_kiosk_for_another_origin_refuses_what_this_server_answers(
    stack: Stack, service: EnrollmentService
) -> None:
    """A kiosk whose card would sign for https://localhost:PORT talks to a server that
    answers for https://127.0.0.1:PORT: it refuses, and withdraws the claim."""
    got = authorize(stack)
    port = stack.enrollment_url.rsplit(":", 1)[1]

    async def run() -> ApiError:
        client = hwgate.connect(f"unix://{stack.paths.kiosk_socket}")
        cert, key = stack.extra["kiosk_cert"]  # a kiosk the server knows
        enrollment = EnrollmentClient(f"https://localhost:{port}", stack.tls_ca, cert, key)
        kiosk = Kiosk(client, enrollment)
        try:
            await kiosk.start_code()
            with pytest.raises(ApiError) as err:
                await kiosk.enter_code(got["user_code"])
            assert kiosk.screens.current.screen == "code"
            return err.value
        finally:
            await kiosk.enrollment.close()
            client.close()

    err = asyncio.run(run())
    assert (err.status, err.error) == (403, "wrong_origin")
    assert row_of(service, got["device_code"]).status == "denied"
    assert token(stack, got["device_code"]) == (400, "access_denied")


def _to_approve_screen(stack: Stack, cards: Any, user_code: str) -> dict[str, Any]:
    screen = _kiosk_claims(stack, user_code).json()
    assert screen["screen"] == "device_insert", screen
    cards.insert(0, "alice")
    pin = wait_screen(stack, on("pin"))
    assert pin["device"]["user_code"] == user_code  # still shown while the PIN is asked
    approve = kiosk_post(stack, "/api/pin", {"pin": PIN}).json()
    assert approve["screen"] == "approve", approve
    return approve  # type: ignore[no-any-return]


def test_cardholder_denies(stack: Stack, cards: object, service: EnrollmentService) -> None:
    got = authorize(stack, device_name="Mallory's tablet")
    approve = _to_approve_screen(stack, cards, got["user_code"])
    assert approve["device"]["device_name"] == "Mallory's tablet"
    assert approve["name"].startswith("alice")
    denied = kiosk_post(stack, "/api/device/deny").json()
    assert (denied["screen"], denied["message"]) == ("insert", "Sign-in denied.")
    assert token(stack, got["device_code"]) == (400, "access_denied")
    assert row_of(service, got["device_code"]).enrollment_id is None


def test_card_pulled_before_approval_withdraws_the_claim(
    stack: Stack, cards: object, service: EnrollmentService
) -> None:
    got = authorize(stack)
    _to_approve_screen(stack, cards, got["user_code"])
    cards.remove(0)  # type: ignore[attr-defined]
    wait_screen(stack, on("insert"))
    assert row_of(service, got["device_code"]).status == "denied"


def test_phone_signs_in_and_redeems_the_qr_with_its_token(
    stack: Stack, cards: object, service: EnrollmentService
) -> None:
    got = device_flow.start(stack.enrollment_url, stack.tls_ca, device_name="Pixel e2e")
    approve = _to_approve_screen(stack, cards, got.user_code)
    assert approve["device"]["device_name"] == "Pixel e2e"
    qr = kiosk_post(stack, "/api/device/approve").json()
    assert qr["screen"] == "qr", qr
    the_token = device_flow.poll(stack.enrollment_url, got, stack.tls_ca)
    assert token(stack, got.device_code) == (400, "invalid_grant")  # the device code is spent
    payload = parse_payload(qr["qr_payload"])
    anchor = x509.load_pem_x509_certificate(stack.paths.pki_cert("issuing-ca").read_bytes())
    # The QR code alone no longer redeems, nor does another device's token.
    for bad, why in (("", "device_token_required"), ("x" * 43, "device_mismatch")):
        with pytest.raises(ActivationError, match=why):
            activate(payload, anchor, stack.tls_ca, bad)
    cred = activate(payload, anchor, stack.tls_ca, the_token)
    assert cred.certificate.subject.rfc4514_string().startswith("CN=alice")
    row = row_of(service, got.device_code)
    assert (row.status, row.enrollment_id) == ("redeemed", payload.enrollment_id)
    # Nor does the token redeem an enrollment made without a device sign-in.
    legacy = parse_payload(enroll(stack, R0)["qr_payload"])
    with pytest.raises(ActivationError, match="device_mismatch"):
        activate(legacy, anchor, stack.tls_ca, the_token)


def test_client_honours_slow_down_against_the_server(
    stack: Stack, service: EnrollmentService
) -> None:
    """A phone that does not actually wait is slowed down by the server and follows it:
    every wait it asks for grows by 5 s, and it ends with its own expiry check."""
    service.config = dataclasses.replace(service.config, device_poll_interval=20)
    got = device_flow.start(stack.enrollment_url, stack.tls_ca)
    waits: list[float] = []
    now = [0.0]

    def no_real_wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with pytest.raises(device_flow.DeviceFlowError) as err:
        device_flow.poll(stack.enrollment_url, got, stack.tls_ca, sleep=no_real_wait,
                         clock=lambda: now[0])  # fmt: skip
    assert err.value.error == "expired_token"
    assert waits[:4] == [20, 20, 25, 30]  # pending, then slow_down after slow_down
    assert all(b - a == 5 for a, b in itertools.pairwise(waits[1:]))
    assert row_of(service, got.device_code).poll_interval == waits[-1]


def test_hwgate_phone_cli_from_device_code_to_credential(stack: Stack, cards: object) -> None:
    anchor = stack.paths.pki_cert("issuing-ca")
    phone = subprocess.Popen(
        [sys.executable, "-m", "hwgate_apps.phone.main", "--server", stack.enrollment_url,
         "--anchor", str(anchor), "--tls-ca", stack.tls_ca, "--device-name", "CLI phone"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert phone.stdout is not None and phone.stdin is not None
        lines = [phone.stdout.readline() for _ in range(2)]
        found = USER_CODE.search(lines[1])
        assert found, lines
        _to_approve_screen(stack, cards, found.group())
        qr = kiosk_post(stack, "/api/device/approve").json()
        assert qr["screen"] == "qr", qr
        phone.stdin.write(qr["qr_payload"] + "\n")
        phone.stdin.flush()
        out, err = phone.communicate(timeout=60)
    finally:
        if phone.poll() is None:
            phone.kill()
            phone.wait()
    assert phone.returncode == 0, err
    assert "signed in: the cardholder approved this device" in out
    assert "chain verified up to" in out and "subject: CN=alice" in out


def test_card_inserted_while_typing_the_code_is_used(stack: Stack, cards: object) -> None:
    """The card goes in while the code form shows (no screen takes it then); once the
    code is accepted the kiosk finds it without a new card event and asks for the PIN."""
    got = authorize(stack)
    assert kiosk_post(stack, "/api/device/start").json()["screen"] == "code"
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    assert wait_screen(stack, on("code"))["screen"] == "code"
    screen = kiosk_post(stack, "/api/device/code", {"user_code": got["user_code"]}).json()
    assert screen["screen"] == "pin", screen
    assert screen["name"].startswith("alice") and screen["device"]["user_code"] == got["user_code"]
