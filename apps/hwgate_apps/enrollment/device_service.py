"""RFC 8628 device authorization grant, with the smart card as the sign-in.

The phone (a public OAuth client) asks ``/device_authorization`` for a device
code and a user code, shows the user code and polls ``/token``. At a kiosk the
cardholder types the user code (the kiosk *claims* it: single use, rate
limited), inserts the card, enters the PIN, sees which device asks and for whom,
and approves with the card's origin-bound proof over a challenge naming that
device authorization (:mod:`.device_proof`), or denies. Approval creates the
enrollment the QR step redeems, linked to the device authorization; the phone's
token is then required to redeem that enrollment's activation code, so the QR
code alone is no longer enough (someone photographing the kiosk screen gets
nothing).

Token-endpoint answers are RFC 6749 §5.2 JSON errors (``error``,
``error_description``; 400, or 401 for ``invalid_client``) plus RFC 8628 §3.5's
``authorization_pending``, ``slow_down``, ``access_denied``, ``expired_token``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwgate_apps.enrollment import polling, user_code
from hwgate_apps.enrollment.device_proof import NONCE_BYTES, approval_challenge
from hwgate_apps.enrollment.device_store import WAITING, DeviceAuthorization, DeviceStore
from hwgate_apps.enrollment.proof import ProofError, check_proof
from hwgate_apps.web import ApiError, b64, unb64

if TYPE_CHECKING:
    from hwgate_apps.enrollment.service import EnrollmentService

log = logging.getLogger(__name__)
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "derived-piv"
DEVICE_NAME_MAX = 64
_DRAWS = 5  # user-code collisions with a stored code are astronomically rare; retry a few


@dataclass
class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    error: str
    description: str
    status: int = 400


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _device_name(value: str) -> str:
    if len(value) > DEVICE_NAME_MAX or not value.isprintable():
        raise OAuthError("invalid_request", f"device_name: at most {DEVICE_NAME_MAX} printable "
                         "characters")  # fmt: skip
    return value.strip()


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header (RFC 6750 §2.1), or ""."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class DeviceFlow:
    """The device authorization and token endpoints, and the kiosk's claim/approve/deny."""

    def __init__(self, service: EnrollmentService) -> None:
        self.service = service
        self.store = DeviceStore(service.store)

    @property
    def config(self) -> Any:
        return self.service.config  # read each time: tests and reloads replace it

    def _mac(self, code: str) -> bytes:
        mac: bytes = self.service.hsm.sign(
            self.config.activation_key, "hmac-sha256", data=user_code.mac_input(code)
        )
        return mac

    def _client(self, params: dict[str, str]) -> str:
        client_id = params.get("client_id", "")
        if not client_id:
            raise OAuthError("invalid_request", "client_id is required")
        if client_id not in self.config.device_clients:
            raise OAuthError("invalid_client", "unknown client", status=401)
        return client_id

    # --- RFC 8628 §3.1-3.2: the device authorization endpoint ---

    def authorize(self, params: dict[str, str]) -> dict[str, Any]:
        client_id = self._client(params)
        scope = params.get("scope", SCOPE)
        if scope != SCOPE:
            raise OAuthError("invalid_scope", f"the only scope is {SCOPE!r}")
        name = _device_name(params.get("device_name", ""))
        device_code, now = secrets.token_urlsafe(32), time.time()
        ttl, interval = self.config.device_code_ttl, self.config.device_poll_interval
        for _ in range(_DRAWS):
            code = user_code.generate()
            row = DeviceAuthorization(
                id=str(uuid.uuid4()), device_code_hash=_sha256(device_code),
                user_code_mac=self._mac(code), client_id=client_id, device_name=name,
                scope=scope, created_at=now, expires_at=now + ttl, poll_interval=interval,
                last_poll_at=None, polls=0, status="pending", kiosk_session=None, nonce=None,
                enrollment_id=None, subject=None, decided_at=None, grant_hash=None,
                grant_expires_at=None,
            )  # fmt: skip
            if self.store.add(row):
                break
        else:
            raise OAuthError("temporarily_unavailable", "no free user code, try again", 503)
        log.info("device authorization %s started for client %s", row.id, client_id)
        shown = user_code.display(code)
        return {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": self.config.verification_uri,
            "verification_uri_complete": f"{self.config.verification_uri}?user_code={shown}",
            "expires_in": int(ttl),
            "interval": interval,
        }

    # --- RFC 8628 §3.4-3.5: the token endpoint ---

    def token(self, params: dict[str, str]) -> dict[str, Any]:
        grant_type = params.get("grant_type", "")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"only {GRANT_TYPE}")
        device_code = params.get("device_code", "")
        if not device_code:
            raise OAuthError("invalid_request", "device_code is required")
        client_id = self._client(params)
        row = self.store.by_device_code(_sha256(device_code))
        if row is None or row.client_id != client_id:
            raise OAuthError("invalid_grant", "unknown device_code")
        return self._answer(row)

    def _answer(self, row: DeviceAuthorization) -> dict[str, Any]:
        now = time.time()
        if row.status == "redeemed":
            raise OAuthError("invalid_grant", "the device_code was already used")
        if row.status == "denied":
            raise OAuthError("access_denied", "the cardholder denied the sign-in")
        if row.expires_at <= now:
            raise OAuthError("expired_token", "the device_code has expired")
        if row.status in WAITING:
            self._pace(row, now)
            raise OAuthError("authorization_pending", "waiting for the cardholder at a kiosk")
        ttl = self.config.code_ttl
        token = secrets.token_urlsafe(32)
        if not self.store.redeem(row.id, _sha256(token), now + ttl):
            raise OAuthError("invalid_grant", "the device_code was already used")
        log.info("device authorization %s: token issued", row.id)
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(ttl),
                "scope": row.scope}  # fmt: skip

    def _pace(self, row: DeviceAuthorization, now: float) -> None:
        """slow_down for a poll sooner than the interval (or racing another poll)."""
        interval = row.poll_interval
        if not polling.too_fast(row.last_poll_at, now, interval) and self.store.record_poll(
            row.id, row.polls, now, interval
        ):
            return
        self.store.slow_down(row.id, now, polling.SLOW_DOWN_STEP)
        raise OAuthError("slow_down", f"poll at most every {polling.slowed(interval)} s")

    # --- the kiosk: claim the user code, then approve or deny ---

    def _rate_limit(self, client_key: str) -> None:
        config, now = self.config, time.time()
        window = config.user_code_window
        buckets = ((f"client:{client_key}", config.user_code_attempts_per_client),
                   ("global", config.user_code_attempts_global))  # fmt: skip
        for bucket, limit in buckets:
            if self.store.count_attempt(bucket, window, now) > limit:
                log.warning("user code attempts over the limit (%s)", bucket)
                raise ApiError(429, "rate_limited", "too many code attempts; try again later")

    def claim(self, body: dict[str, Any], client_key: str) -> dict[str, Any]:
        """Take a user code for one kiosk session (once); what the cardholder must see."""
        kiosk_session = str(body.get("kiosk_session", ""))
        if not kiosk_session or len(kiosk_session) > 128:
            raise ApiError(400, "bad_request", "kiosk_session is required (at most 128 chars)")
        self._rate_limit(client_key)  # before anything else: every attempt counts
        code = user_code.normalize(str(body.get("user_code", "")))
        if code is None:
            raise ApiError(400, "user_code_format", "a code is 8 letters, like WDJB-MJHT")
        mac = self._mac(code)
        row = self.store.by_user_code(mac)
        nonce, now = secrets.token_bytes(NONCE_BYTES), time.time()
        # The lookup is by the code's HMAC; the comparison itself is constant-time.
        found = row is not None and hmac.compare_digest(row.user_code_mac, mac)
        if not found or row is None or not self.store.claim(row.id, kiosk_session, nonce, now):
            raise ApiError(404, "user_code_invalid", "unknown, used or expired code")
        log.info("device authorization %s claimed by a kiosk", row.id)
        return {
            "device_authorization_id": row.id,
            "origin": self.config.origin,
            "nonce": b64(nonce),
            "client_id": row.client_id,
            "client_name": self.config.device_clients.get(row.client_id, row.client_id),
            "device_name": row.device_name,
            "user_code": user_code.display(code),
            "requested_at": row.created_at,
            "expires_at": row.expires_at,
        }

    def _claimed(self, body: dict[str, Any]) -> tuple[DeviceAuthorization, str]:
        row = self.store.get(str(body.get("device_authorization_id", "")))
        kiosk_session = str(body.get("kiosk_session", ""))
        if (
            row is None
            or row.status != "claimed"
            or not kiosk_session
            or not hmac.compare_digest((row.kiosk_session or "").encode(), kiosk_session.encode())
        ):
            raise ApiError(409, "not_claimed", "no such sign-in waiting at this kiosk")
        return row, kiosk_session

    def approve(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check the card's proof over this device authorization; the enrollment (QR)."""
        row, kiosk_session = self._claimed(body)
        if row.expires_at <= time.time():
            raise ApiError(410, "expired", "the sign-in request has expired")
        assert row.nonce is not None
        # Valid, chained and not revoked, with the precise reason if not (piv_cert_*).
        self.service.lifecycle.check_card(unb64(body.get("certificate"), "certificate"))
        try:
            holder = check_proof(
                certificate_der=unb64(body.get("certificate"), "certificate"),
                signature=unb64(body.get("signature"), "signature"),
                challenge=approval_challenge(row.id, row.nonce),
                origin=self.config.origin,  # ours, never the kiosk's
                issuer=self.service.piv_issuer,
                now=dt.datetime.now(dt.UTC),
            )
        except ProofError as err:
            log.info("device approval refused: %s", err)
            raise ApiError(403, "proof_refused", str(err)) from None
        self.service._check_cap(holder.fasc_n)
        result = self.service.new_enrollment(holder, body)
        eid = result["enrollment_id"]
        if not self.store.approve(row.id, kiosk_session, eid, holder.subject):
            self.service.store.revoke(eid)  # lost a race with deny/expiry: nothing stays usable
            raise ApiError(409, "not_claimed", "the sign-in request was decided meanwhile")
        log.info("device authorization %s approved: enrollment %s", row.id, eid)
        return {**result, "device_authorization_id": row.id, "device_name": row.device_name}

    def deny(self, body: dict[str, Any]) -> dict[str, Any]:
        row, kiosk_session = self._claimed(body)
        if not self.store.deny(row.id, kiosk_session):
            raise ApiError(409, "not_claimed", "the sign-in request was decided meanwhile")
        log.info("device authorization %s denied at the kiosk", row.id)
        return {"device_authorization_id": row.id, "status": "denied"}

    # --- the QR step: the phone presents its token with the activation code ---

    def check_grant(self, enrollment_id: str, authorization: str) -> None:
        """An enrollment made for a signed-in device is redeemed by that device's token only."""
        token = bearer_token(authorization)
        linked = self.store.by_enrollment(enrollment_id)
        if linked is None:
            if token:
                raise ApiError(403, "device_mismatch", "this enrollment is for no signed-in device")
            return
        if not token:
            raise ApiError(401, "device_token_required", "sign in on the phone first")
        if linked.grant_hash is None or not hmac.compare_digest(linked.grant_hash, _sha256(token)):
            raise ApiError(403, "device_mismatch", "this enrollment belongs to another device")
        if (linked.grant_expires_at or 0) <= time.time():
            raise ApiError(401, "device_token_expired", "the device's sign-in has expired")
