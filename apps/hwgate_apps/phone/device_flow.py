"""The phone's RFC 8628 sign-in: ask for a code, show it, poll until the kiosk decides.

Polling follows §3.5 to the letter: wait ``interval`` seconds (5 when the
server gave none) before every token request, add 5 s for this and every later
request on ``slow_down``, keep going on ``authorization_pending``, and stop on
anything else (``access_denied``, ``expired_token``, ...) or when the codes'
``expires_in`` has passed. The token it gets is sent only to the server that
issued it (see :func:`same_origin`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from hwgate_apps.web import tls_context

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ID = "hwgate-phone"
DEFAULT_INTERVAL = 5
SLOW_DOWN_STEP = 5
KEEP_POLLING = ("authorization_pending", "slow_down")


class DeviceFlowError(Exception):
    """The sign-in ended without a token; ``error`` is the server's code (or "")."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}" if error else message)
        self.error = error


@dataclass(frozen=True)
class DeviceCode:
    """The device authorization response (§3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


def next_interval(interval: int, error: str) -> int | None:
    """The wait before the next poll after *error*, or None when polling must stop."""
    if error == "authorization_pending":
        return interval
    if error == "slow_down":
        return interval + SLOW_DOWN_STEP
    return None


def same_origin(a: str, b: str) -> bool:
    """Whether two https URLs share scheme, host and port (the token's audience check)."""
    left, right = httpx.URL(a), httpx.URL(b)
    return (left.scheme, left.host, left.port) == (right.scheme, right.host, right.port)


def _post(url: str, form: dict[str, str], tls_ca: str | None) -> tuple[int, dict[str, Any]]:
    response = httpx.post(url, data=form, verify=tls_context(tls_ca), timeout=30)
    try:
        data = response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return response.status_code, data


def start(
    base_url: str, tls_ca: str | None, *, client_id: str = CLIENT_ID, device_name: str = ""
) -> DeviceCode:
    """POST /device_authorization (§3.1); the codes to show."""
    form = {"client_id": client_id, "scope": "derived-piv"}
    if device_name:
        form["device_name"] = device_name
    status, data = _post(f"{base_url.rstrip('/')}/device_authorization", form, tls_ca)
    if status != 200:
        raise DeviceFlowError(str(data.get("error", "")), str(data.get("error_description",
                              f"HTTP {status}")))  # fmt: skip
    try:
        return DeviceCode(
            device_code=str(data["device_code"]), user_code=str(data["user_code"]),
            verification_uri=str(data["verification_uri"]),
            verification_uri_complete=str(data.get("verification_uri_complete", "")),
            expires_in=int(data["expires_in"]),
            interval=int(data.get("interval", DEFAULT_INTERVAL)),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise DeviceFlowError("", "the device authorization response is incomplete") from None


def poll(
    base_url: str,
    code: DeviceCode,
    tls_ca: str | None,
    *,
    client_id: str = CLIENT_ID,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_answer: Callable[[str, int], None] | None = None,
) -> str:
    """Poll the token endpoint (§3.4) until a token comes; the access token."""
    url = f"{base_url.rstrip('/')}/token"
    form = {"grant_type": GRANT_TYPE, "device_code": code.device_code, "client_id": client_id}
    interval, deadline = code.interval, clock() + code.expires_in
    while True:
        sleep(interval)  # §3.5: wait at least the interval before each request
        if clock() >= deadline:
            raise DeviceFlowError("expired_token", "the code expired before anyone approved it")
        status, data = _post(url, form, tls_ca)
        if status == 200 and data.get("access_token"):
            return str(data["access_token"])
        error = str(data.get("error", ""))
        wait = next_interval(interval, error)
        if wait is None:
            raise DeviceFlowError(error, str(data.get("error_description", f"HTTP {status}")))
        interval = wait
        if on_answer is not None:
            on_answer(error, interval)
