"""The kiosk's flow: card events in, PIN, proof of possession, QR code out.

hwgate's blocking client runs in threads (``asyncio.to_thread``); the event
stream runs in its own thread and hands events to the loop. Every screen
change goes through one asyncio lock, so a card pulled in the middle of a
step always wins: the step's result is dropped if the card it was for is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from typing import Any

import segno
from cryptography import x509
from cryptography.x509.oid import NameOID

import hwgate
from hwgate.v1 import card_pb2, piv_pb2
from hwgate_apps.kiosk import state as s
from hwgate_apps.kiosk.device import DeviceClaim, DeviceSignIn
from hwgate_apps.kiosk.enroll_client import EnrollmentClient, EnrollmentRefused
from hwgate_apps.web import ApiError

log = logging.getLogger(__name__)
KEEPALIVE = 10.0  # seconds; below the daemon's 30 s session TTL cap
Event = card_pb2.WatchEventsResponse


def cardholder_name(identity: card_pb2.CardIdentity) -> str:
    """The CN of the PIV Authentication certificate (or the whole subject)."""
    subject = identity.piv_auth_certificate.subject
    try:
        cns = x509.Name.from_rfc4514_string(subject).get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return subject
    return str(cns[0].value) if cns else subject


def qr_svg(payload: str) -> str:
    """The QR code as inline SVG (no external assets), black on white, scalable."""
    code = segno.make(payload, error="m")
    svg: str = code.svg_inline(scale=8, border=4, dark="#000", light="#fff", omitsize=True)
    return svg


class Kiosk(DeviceSignIn):
    """One kiosk: one reader pattern, one cardholder at a time."""

    def __init__(
        self, client: hwgate.Client, enrollment: EnrollmentClient, reader_pattern: str = "*"
    ) -> None:
        self.client = client
        self.enrollment = enrollment
        self.pattern = reader_pattern
        self.screens = s.Broadcaster()
        self._lock = asyncio.Lock()
        self._session: str | None = None
        self._kiosk_session = ""  # per card insertion; binds the challenge
        self._keepalive: asyncio.Task[None] | None = None
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._device: DeviceClaim | None = None  # a phone's sign-in being decided here

    # --- card events ---

    def start(self) -> None:
        """Watch card events in a thread; they are applied on this loop."""
        loop = asyncio.get_running_loop()
        self._stream = self.client.watch_events([self.pattern])

        def pump() -> None:
            with contextlib.suppress(hwgate.HwgateError):
                for event in self._stream:
                    asyncio.run_coroutine_threadsafe(self._on_event(event), loop)

        self._thread = threading.Thread(target=pump, name="kiosk-events", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        async with self._lock:
            await self._end_session()
        await self.enrollment.close()

    async def _on_event(self, event: Event) -> None:
        async with self._lock:
            present = event.state == card_pb2.READER_STATE_PRESENT
            arrived = event.type in (card_pb2.EVENT_TYPE_CARD_INSERTED,
                                     card_pb2.EVENT_TYPE_READER_STATE)  # fmt: skip
            idle = self.screens.current.screen in (s.INSERT, s.DEVICE_INSERT)
            if arrived and present and event.card.is_piv and idle:
                await self._card_in(event.reader, event.card)
            ours = event.reader == self.screens.current.reader
            gone = event.type in (card_pb2.EVENT_TYPE_CARD_REMOVED,
                                  card_pb2.EVENT_TYPE_READER_REMOVED) or not present  # fmt: skip
            if (ours and gone) or event.type == card_pb2.EVENT_TYPE_SERVICE_DOWN:
                await self._reset()

    async def _card_in(self, reader: str, identity: card_pb2.CardIdentity) -> None:
        self._kiosk_session = secrets.token_urlsafe(16)
        retries = await self._retries(reader)
        device = self._device_fields()
        if retries == 0:  # straight to the unblock form
            self.screens.publish(screen=s.BLOCKED, reader=reader, name=cardholder_name(identity),
                                 retries_left=0, message="This card's PIN is blocked.",
                                 **device)  # fmt: skip
            return
        self.screens.publish(screen=s.PIN, reader=reader, name=cardholder_name(identity),
                             retries_left=retries, last_attempt=retries == 1, **device)  # fmt: skip

    async def _retries(self, reader: str) -> int | None:
        try:
            info = await asyncio.to_thread(self.client.get_card_info, reader)
        except hwgate.HwgateError:
            return None
        return info.pin_retries_left if info.HasField("pin_retries_left") else None

    async def _reset(self) -> None:
        """Back to "Insert your card": the session ends, nothing of the cardholder stays."""
        await self._end_session()
        await self._drop_device()
        self._kiosk_session = ""
        self.screens.publish(screen=s.INSERT)

    async def _end_session(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._session is not None:
            session, self._session = self._session, None
            with contextlib.suppress(hwgate.HwgateError):
                await asyncio.to_thread(self.client.close_session, session)

    # --- PIN ---

    async def submit_pin(self, pin: bytearray, allow_last_attempt: bool) -> s.Screen:
        """VerifyPin once with *pin* (wiped here); the next screen."""
        try:
            async with self._lock:
                self._expect(s.PIN)
                session = await self._session_on(self.screens.current.reader)
                await asyncio.to_thread(
                    self.client.verify_pin, session, pin,
                    allow_last_attempt=allow_last_attempt,
                )  # fmt: skip
                self._keepalive = asyncio.create_task(self._keep_session())
                after = s.APPROVE if self._device else s.READY  # a phone's sign-in, or the QR
                return self.screens.update(screen=after, message="", last_attempt=False)
        except hwgate.HwgateError as err:
            return await self._pin_failed(err)
        finally:
            pin[:] = bytes(len(pin))

    async def _pin_failed(self, err: hwgate.HwgateError) -> s.Screen:
        async with self._lock:
            if isinstance(err, hwgate.PinIncorrect):
                left = err.retries_left
                return self.screens.update(
                    retries_left=left, last_attempt=left == 1,
                    message=f"Wrong PIN. {left} {'try' if left == 1 else 'tries'} left.",
                )  # fmt: skip
            if isinstance(err, hwgate.LastPinAttempt):
                return self.screens.update(retries_left=1, last_attempt=True, message=(
                    "Only one try left: a wrong PIN now blocks the card. "
                    "Confirm the last attempt to continue."))  # fmt: skip
            if isinstance(err, hwgate.PinBlocked):
                await self._end_session()
                return self.screens.update(screen=s.BLOCKED, retries_left=0,
                                           message="This card's PIN is blocked.")  # fmt: skip
            if isinstance(err, hwgate.PinFormat):
                return self.screens.update(message="The PIN is 6 to 8 digits.")
            return await self._failed(err)

    # --- PIN change and unblock ---

    async def _session_retries(self, session: str) -> int | None:
        try:
            info = await asyncio.to_thread(self.client.get_card_info, session_id=session)
        except hwgate.HwgateError:
            return None
        return info.pin_retries_left if info.HasField("pin_retries_left") else None

    async def _session_on(self, reader: str) -> str:
        if self._session is None:
            opened = await asyncio.to_thread(self.client.open_session, reader)
            self._session = opened.session_id
        return self._session

    async def change_pin(
        self, old: bytearray, new: bytearray, allow_last_attempt: bool
    ) -> s.Screen:
        """ChangePin from the PIN screen (both wiped here); back to the PIN screen, where the
        cardholder verifies the new PIN (a change leaves the PIN unverified)."""
        try:
            async with self._lock:
                self._expect(s.PIN)
                session = await self._session_on(self.screens.current.reader)
                await asyncio.to_thread(
                    self.client.change_pin, session, old, new,
                    allow_last_attempt=allow_last_attempt,
                )  # fmt: skip
                left = await self._session_retries(session)
                return self.screens.update(retries_left=left, last_attempt=left == 1,
                                           message="PIN changed. Enter your new PIN.")  # fmt: skip
        except hwgate.HwgateError as err:
            return await self._pin_failed(err)
        finally:
            old[:] = bytes(len(old))
            new[:] = bytes(len(new))

    async def unblock_pin(self, puk: bytearray, new: bytearray, allow_last: bool) -> s.Screen:
        """UnblockPin from the blocked screen (both wiped here); the PIN screen on success."""
        try:
            async with self._lock:
                self._expect(s.BLOCKED)
                session = await self._session_on(self.screens.current.reader)
                await asyncio.to_thread(
                    self.client.unblock_pin, session, puk, new, allow_last_puk_attempt=allow_last
                )
                left = await self._session_retries(session)
                return self.screens.update(
                    screen=s.PIN,
                    retries_left=left,
                    last_attempt=False,
                    puk_last_attempt=False,
                    message="PIN unblocked. Enter your new PIN.",
                )
        except hwgate.HwgateError as err:
            return await self._puk_failed(err)
        finally:
            puk[:] = bytes(len(puk))
            new[:] = bytes(len(new))

    async def _puk_failed(self, err: hwgate.HwgateError) -> s.Screen:
        async with self._lock:
            if isinstance(err, hwgate.PukIncorrect):
                left = err.retries_left
                tries = "" if left is None else f" {left} {'try' if left == 1 else 'tries'} left."
                return self.screens.update(puk_last_attempt=left == 1,
                                           message=f"Wrong PUK.{tries}")  # fmt: skip
            if isinstance(err, hwgate.LastPukAttempt):
                return self.screens.update(puk_last_attempt=True, message=(
                    "Only one PUK try left: a wrong PUK now makes the card unusable. "
                    "Confirm the last attempt to continue."))  # fmt: skip
            if isinstance(err, hwgate.PukBlocked):
                await self._end_session()
                return self.screens.update(puk_blocked=True, puk_last_attempt=False, message=(
                    "The PUK is blocked too. Please contact your card issuer."))  # fmt: skip
            if isinstance(err, hwgate.PinFormat):
                return self.screens.update(
                    message="The PUK is 8 characters, the PIN 6 to 8 digits."
                )
            return await self._failed(err)

    async def _keep_session(self) -> None:
        """Keep the verified session alive while the cardholder reads the screen."""
        while True:
            await asyncio.sleep(KEEPALIVE)
            session = self._session
            if session is None:
                return
            with contextlib.suppress(hwgate.HwgateError):
                await asyncio.to_thread(self.client.get_card_info, session_id=session)

    # --- proof of possession and the QR code ---

    async def request_credential(self) -> s.Screen:
        """Challenge -> Authenticate (9A, origin-bound) -> enrollment -> QR screen."""
        async with self._lock:
            self._expect(s.READY)
            session, kiosk_session = self._session, self._kiosk_session
            self.screens.update(screen=s.WORKING, message="Contacting the enrollment server…")
            try:
                cid, challenge = await self.enrollment.challenge(kiosk_session)
                proof = await asyncio.to_thread(
                    self.client.authenticate, str(session), self.enrollment.origin, challenge
                )
                email_certs = await self._email_certificates(str(session))
                await self._end_session()  # the card is not needed any more
                result = await self.enrollment.enroll(kiosk_session, cid, proof, email_certs)
            except (hwgate.HwgateError, EnrollmentRefused) as err:
                return await self._failed(err)
            return self.screens.update(
                screen=s.QR, message="", qr_svg=qr_svg(result["qr_payload"]),
                qr_payload=result["qr_payload"],
                code=result["code"], expires_at=float(result["expires_at"]),
            )  # fmt: skip

    async def _email_certificates(self, session: str) -> dict[str, bytes]:
        """The card's 9C/9D certificates (DER) for S/MIME issuance; those it has."""
        info = await asyncio.to_thread(self.client.get_card_info, session_id=session)
        return {_EMAIL_SLOTS[c.slot]: c.der for c in info.certificates if c.slot in _EMAIL_SLOTS}

    async def _failed(self, err: Exception) -> s.Screen:
        if isinstance(err, hwgate.CardRemoved | hwgate.CardNotPresent | hwgate.ReaderNotFound):
            await self._reset()
            return self.screens.current
        log.warning("kiosk step failed: %s", err)
        await self._end_session()
        return self.screens.update(screen=s.ERROR, message=_explain(err))

    def _expect(self, screen: str) -> None:
        if self.screens.current.screen != screen:
            raise ApiError(409, "wrong_screen", f"not on the {screen} screen")


_EMAIL_SLOTS = {piv_pb2.SLOT_DIGITAL_SIGNATURE: "9c", piv_pb2.SLOT_KEY_MANAGEMENT: "9d"}


def _explain(err: Exception) -> str:
    if isinstance(err, EnrollmentRefused):
        return f"The enrollment server refused: {err.message}"
    if isinstance(err, hwgate.SessionNotFound):
        return "The card session timed out. Remove the card and start again."
    return "Something went wrong. Remove the card and start again."
