"""The kiosk's calls to the enrollment server (HTTPS JSON)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import httpx

from hwgate_apps.web import tls_context


class EnrollmentRefused(Exception):
    """The enrollment server said no; ``error`` is its machine-readable reason."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message


def origin_of(url: str) -> str:
    """The RFC 6454 origin of *url*, as a browser would bind it: scheme://host[:port]."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class EnrollmentClient:
    """Challenge and proof-of-possession calls; the origin comes from the server URL.

    The kiosk proves who it is with its client certificate (*cert*, *key*): the
    server starts enrollments only for kiosks it knows.
    """

    def __init__(
        self,
        base_url: str,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = origin_of(self.base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, verify=tls_context(cacert, cert, key), timeout=30
        )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._http.post(path, json=body)
        data: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise EnrollmentRefused(response.status_code, data.get("error", ""),
                                    data.get("message", ""))  # fmt: skip
        return data

    async def challenge(self, kiosk_session: str) -> tuple[str, bytes]:
        """(challenge id, challenge bytes)."""
        data = await self._post("/enrollments/challenge", {"kiosk_session": kiosk_session})
        return data["challenge_id"], base64.b64decode(data["challenge"])

    async def enroll(
        self, kiosk_session: str, challenge_id: str, proof: Any,
        card_certificates: dict[str, bytes] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Send the card's Authenticate reply; the enrollment (code, QR payload) back.

        *card_certificates*: the card's e-mail certificates by slot ("9c", "9d"),
        DER, for the S/MIME credentials (the server checks they are this card's)."""
        body: dict[str, Any] = {
            "kiosk_session": kiosk_session,
            "challenge_id": challenge_id,
            "signature": base64.b64encode(proof.signature).decode(),
            "certificate": base64.b64encode(proof.certificate).decode(),
            "origin": self.origin,
        }
        return await self._post("/enrollments", _with_certificates(body, card_certificates))

    # --- RFC 8628 device sign-in ---

    async def claim_device(self, kiosk_session: str, user_code: str) -> dict[str, Any]:
        """Take the phone's user code for this kiosk session: the device to show."""
        body = {"kiosk_session": kiosk_session, "user_code": user_code}
        return await self._post("/device/claim", body)

    async def approve_device(
        self, kiosk_session: str, daid: str, proof: Any,
        card_certificates: dict[str, bytes] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Send the card's proof over the device authorization; the enrollment (QR) back.

        *card_certificates* as for :meth:`enroll`."""
        body: dict[str, Any] = {
            "kiosk_session": kiosk_session,
            "device_authorization_id": daid,
            "signature": base64.b64encode(proof.signature).decode(),
            "certificate": base64.b64encode(proof.certificate).decode(),
            "origin": self.origin,
        }
        return await self._post("/device/approve", _with_certificates(body, card_certificates))

    async def deny_device(self, kiosk_session: str, daid: str) -> dict[str, Any]:
        body = {"kiosk_session": kiosk_session, "device_authorization_id": daid}
        return await self._post("/device/deny", body)

    async def close(self) -> None:
        await self._http.aclose()


def _with_certificates(
    body: dict[str, Any], card_certificates: dict[str, bytes] | None
) -> dict[str, Any]:
    """*body* plus the card's e-mail certificates (base64 DER by slot), if any."""
    if card_certificates:
        body["card_certificates"] = {
            slot: base64.b64encode(der).decode() for slot, der in card_certificates.items()
        }
    return body
