"""The kiosk's "I have a code" flow: sign a phone in with the smart card (RFC 8628).

Type the code the phone shows (or scan its ``verification_uri_complete``),
insert the card, enter the PIN, see which device asks and for whom, then
approve (the card's origin-bound proof over that device authorization, see
:mod:`hwgate_apps.enrollment.device_proof`) or deny. Approval leads to the QR
screen of the ordinary flow; the phone's token is what redeems it.

The kiosk only signs in to its own enrollment server: a code whose link names
another origin is refused before anything is sent, and so is a claim whose
answer names another origin than the one the card would sign for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import hwgate
from hwgate.v1 import card_pb2
from hwgate_apps.enrollment.device_proof import approval_challenge
from hwgate_apps.kiosk import state as s
from hwgate_apps.kiosk.enroll_client import EnrollmentClient, EnrollmentRefused, origin_of
from hwgate_apps.web import ApiError

log = logging.getLogger(__name__)
MAX_CODE_INPUT = 512  # a pasted verification_uri_complete fits


@dataclass(frozen=True)
class DeviceClaim:
    """A user code this kiosk holds: what the cardholder is asked to approve."""

    id: str
    kiosk_session: str
    nonce: bytes
    view: dict[str, Any]  # what the page shows (no nonce, no session)


def code_from_input(text: str, origin: str) -> str:
    """The user code in what was typed or scanned; ApiError for a link to another origin."""
    text = text.strip()
    if len(text) > MAX_CODE_INPUT:
        raise ApiError(400, "user_code_format", "that is not a code")
    if "://" not in text:
        return text
    parts = urlsplit(text)
    theirs = origin_of(text)
    if parts.scheme != "https" or theirs.lower() != origin.lower():
        raise ApiError(403, "wrong_origin", f"This code is for {theirs}, not for this kiosk's "
                       f"enrollment server ({origin}). Do not enter it here.")  # fmt: skip
    codes = parse_qs(parts.query).get("user_code", [])
    if len(codes) != 1:
        raise ApiError(400, "user_code_format", "the link carries no code")
    return codes[0]


def _view(claim: dict[str, Any]) -> dict[str, Any]:
    keys = ("client_id", "client_name", "device_name", "user_code", "requested_at", "expires_at")
    return {key: claim.get(key) for key in keys}


class DeviceSignIn:
    """Mixed into :class:`~hwgate_apps.kiosk.controller.Kiosk` (its lock, screens, clients)."""

    _device: DeviceClaim | None = None
    if TYPE_CHECKING:  # what the Kiosk provides
        _lock: asyncio.Lock
        screens: s.Broadcaster
        client: hwgate.Client
        enrollment: EnrollmentClient
        pattern: str
        _session: str | None
        _kiosk_session: str

        def _expect(self, screen: str) -> None: ...
        async def _card_in(self, reader: str, identity: card_pb2.CardIdentity) -> None: ...
        async def _end_session(self) -> None: ...
        async def _reset(self) -> None: ...
        async def _failed(self, err: Exception) -> s.Screen: ...
        async def _email_certificates(self, session: str) -> dict[str, bytes]: ...

    def _device_fields(self) -> dict[str, Any]:
        return {"device": self._device.view} if self._device else {}

    async def start_code(self) -> s.Screen:
        """ "I have a code": from the start screen to the code form."""
        async with self._lock:
            self._expect(s.INSERT)
            return self.screens.publish(screen=s.CODE)

    async def enter_code(self, text: str) -> s.Screen:
        """Claim the phone's code at the server; then ask for the card."""
        async with self._lock:
            self._expect(s.CODE)
            code = code_from_input(text, self.enrollment.origin)
            kiosk_session = secrets.token_urlsafe(16)
            try:
                claim = await self.enrollment.claim_device(kiosk_session, code)
            except EnrollmentRefused as err:
                raise ApiError(err.status, err.error, err.message) from None
            device = DeviceClaim(claim["device_authorization_id"], kiosk_session,
                                 base64.b64decode(claim["nonce"]), _view(claim))  # fmt: skip
            if claim.get("origin") != self.enrollment.origin:
                await self._tell_server_no(device)
                raise ApiError(403, "wrong_origin", f"The server answered for "
                               f"{claim.get('origin')}, not {self.enrollment.origin}.")  # fmt: skip
            self._device = device
            self.screens.publish(screen=s.DEVICE_INSERT, **self._device_fields())
            await self._card_already_in()
            return self.screens.current

    async def _card_already_in(self) -> None:
        """A card inserted before the code was typed sends no new event: look for it."""
        try:
            readers = await asyncio.to_thread(self.client.list_readers)
        except hwgate.HwgateError:
            return
        for reader in readers:
            present = reader.state == card_pb2.READER_STATE_PRESENT
            if present and reader.card.is_piv and fnmatch.fnmatchcase(reader.name, self.pattern):
                await self._card_in(reader.name, reader.card)
                return

    async def approve_device(self) -> s.Screen:
        """The card proves possession over this device authorization; the QR screen."""
        async with self._lock:
            self._expect(s.APPROVE)
            device, session = self._device, self._session
            assert device is not None
            self.screens.update(screen=s.WORKING, message="Signing in your phone…")
            try:
                proof = await asyncio.to_thread(
                    self.client.authenticate, str(session), self.enrollment.origin,
                    approval_challenge(device.id, device.nonce),
                )  # fmt: skip
                email_certs = await self._email_certificates(str(session))
                await self._end_session()  # the card is not needed any more
                result = await self.enrollment.approve_device(
                    device.kiosk_session, device.id, proof, email_certs
                )
            except (hwgate.HwgateError, EnrollmentRefused) as err:
                return await self._failed(err)
            self._device = None  # decided: nothing to withdraw when the card leaves
            return self.screens.update(
                screen=s.QR, qr_svg=_qr(result["qr_payload"]), qr_payload=result["qr_payload"],
                code=result["code"], expires_at=float(result["expires_at"]),
                message="Your phone is signed in. Scan this code with the same phone.",
            )  # fmt: skip

    async def deny_device(self) -> s.Screen:
        """The cardholder says no: the phone is told ``access_denied``."""
        async with self._lock:
            if self._device is None:
                raise ApiError(409, "wrong_screen", "no sign-in request to deny")
            await self._end_session()
            await self._tell_server_no(self._device)
            self._device, self._kiosk_session = None, ""
            return self.screens.publish(screen=s.INSERT, message="Sign-in denied.")

    async def cancel_code(self) -> s.Screen:
        """Back to the start from the code form (a claimed code is denied, not left open)."""
        async with self._lock:
            await self._reset()
            return self.screens.current

    async def _drop_device(self) -> None:
        """The kiosk session ends undecided (card pulled, cancel): deny, so the phone stops."""
        device, self._device = self._device, None
        if device is not None:
            await self._tell_server_no(device)

    async def _tell_server_no(self, device: DeviceClaim) -> None:
        with contextlib.suppress(EnrollmentRefused, OSError, ValueError):
            await self.enrollment.deny_device(device.kiosk_session, device.id)


def _qr(payload: str) -> str:
    from hwgate_apps.kiosk.controller import qr_svg

    return qr_svg(payload)
