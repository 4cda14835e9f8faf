"""Helpers for the reference-app tests: kiosk screens over SSE, direct enrollments."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx

import hwgate
from hwgate_apps.stack import Stack
from hwgate_apps.web import tls_context

PIN = "123456"
Screen = dict[str, Any]


def wait_screen(stack: Stack, ready: Callable[[Screen], bool], timeout: float = 20) -> Screen:
    """Follow the kiosk's SSE stream (current screen first) until *ready* holds."""
    seen: list[Screen] = []
    with httpx.stream("GET", f"{stack.kiosk_url}/events", timeout=timeout) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            screen = json.loads(line[len("data: ") :])
            seen.append(screen)
            if ready(screen):
                return screen
    raise AssertionError(f"kiosk never reached the screen; saw {[s['screen'] for s in seen]}")


def on(name: str) -> Callable[[Screen], bool]:
    return lambda screen: screen["screen"] == name


def kiosk_post(stack: Stack, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{stack.kiosk_url}{path}", json=body or {}, timeout=30)


def client_tls(stack: Stack, as_: str | None) -> ssl.SSLContext:
    """TLS to the enrollment server as the stack's kiosk ("kiosk"), the bed's
    administrator ("admin"), another client certificate of the bed ("enrollment",
    known to hwgated but not to the enrollment server) or with none (None)."""
    if as_ == "kiosk":
        cert, key = stack.extra["kiosk_cert"]
    elif as_ is not None:
        cert, key = str(stack.paths.pki_cert(as_)), str(stack.paths.pki_key(as_))
    else:
        cert = key = None
    return tls_context(stack.tls_ca, cert, key)


def enroll_post(
    stack: Stack, path: str, body: dict[str, Any], as_: str | None = "kiosk"
) -> httpx.Response:
    return httpx.post(
        f"{stack.enrollment_url}{path}", json=body, verify=client_tls(stack, as_), timeout=30
    )


def enrollments_of(stack: Stack, fasc_n: str, as_: str | None = "admin") -> httpx.Response:
    url = f"{stack.enrollment_url}/enrollments"
    return httpx.get(url, params={"fasc_n": fasc_n}, verify=client_tls(stack, as_), timeout=30)


def kiosk_client(stack: Stack) -> hwgate.Client:
    return hwgate.connect(f"unix://{stack.paths.kiosk_socket}")


def proof_for(
    stack: Stack, reader: str, *, origin: str | None = None, kiosk_session: str = "k1"
) -> dict[str, Any]:
    """Challenge from the server, Authenticate on the card: the POST /enrollments body."""
    got = enroll_post(stack, "/enrollments/challenge", {"kiosk_session": kiosk_session})
    assert got.status_code == 201, got.text
    data = got.json()
    assert len(base64.b64decode(data["challenge"])) >= 32
    with kiosk_client(stack) as client, client.card_session(reader) as session:
        session.verify_pin(PIN)
        proof = session.authenticate(
            origin or stack.enrollment_url, base64.b64decode(data["challenge"])
        )
    return {
        "kiosk_session": kiosk_session,
        "challenge_id": data["challenge_id"],
        "signature": base64.b64encode(proof.signature).decode(),
        "certificate": base64.b64encode(proof.certificate).decode(),
        "origin": origin or stack.enrollment_url,
    }


def enroll(stack: Stack, reader: str) -> dict[str, Any]:
    """A pending enrollment (code, QR payload) for the card in *reader*."""
    response = enroll_post(stack, "/enrollments", proof_for(stack, reader))
    assert response.status_code == 201, response.text
    return response.json()


def fascn_digits(chuid: Any) -> str:
    """The 32 FASC-N digits from a decoded Fascn (CHUID or CardIdentity)."""
    f = chuid.fascn
    return "".join([
        f.agency_code, f.system_code, f.credential_number, f.credential_series,
        f.individual_credential_issue, f.person_identifier, f.organizational_category,
        f.organizational_identifier, f.person_association,
    ])  # fmt: skip
