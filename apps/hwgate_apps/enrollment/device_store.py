"""Persistence of RFC 8628 device authorizations and user-code attempt counters.

Its own tables (migration 4 in :mod:`.migrations`), through the enrollment
store's connection, in SQL that SQLite and PostgreSQL both take: upserts with
``ON CONFLICT``, ``RETURNING``. Every single-use rule is one conditional
UPDATE whose row count decides (claim a user code, approve, deny, hand out the
token), so two concurrent requests can never both win.

Nothing secret is stored in the clear: the device code and the access token are
kept as SHA-256 (they carry 256 random bits), the user code as an HSM HMAC
(see :mod:`.user_code`).

States: ``pending`` (the phone waits, nobody entered the code) -> ``claimed``
(a kiosk session took the user code; it cannot be entered again) ->
``approved`` (the cardholder proved possession; an enrollment exists) ->
``redeemed`` (the phone got its token), or ``denied`` from pending/claimed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwgate_apps.enrollment.db import Result
    from hwgate_apps.enrollment.store import Store

WAITING = ("pending", "claimed")  # the phone is told authorization_pending / slow_down


@dataclass(frozen=True)
class DeviceAuthorization:
    """One row of ``device_authorizations``."""

    id: str
    device_code_hash: bytes
    user_code_mac: bytes
    client_id: str
    device_name: str
    scope: str
    created_at: float
    expires_at: float
    poll_interval: int
    last_poll_at: float | None
    polls: int
    status: str
    kiosk_session: str | None
    nonce: bytes | None
    enrollment_id: str | None
    subject: str | None
    decided_at: float | None
    grant_hash: bytes | None
    grant_expires_at: float | None


def _row(row: Any) -> DeviceAuthorization | None:
    if row is None:
        return None
    values = list(row)
    for i in (1, 2, 13, 17):  # BLOB columns come back as bytes (or memoryview elsewhere)
        if values[i] is not None:
            values[i] = bytes(values[i])
    return DeviceAuthorization(*values)


class DeviceStore:
    """The device-flow tables; safe to share between the server's worker threads."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> Result:
        return self._store._run(sql, args)

    # --- the phone's side ---

    def add(self, d: DeviceAuthorization) -> bool:
        """Insert; False when the user code's MAC collides with a stored one (draw again)."""
        cur = self._run(
            f"INSERT INTO device_authorizations VALUES ({','.join('?' * 19)}) "
            "ON CONFLICT DO NOTHING",
            tuple(d.__dict__.values()),
        )
        return cur.rowcount == 1

    def by_device_code(self, device_code_hash: bytes) -> DeviceAuthorization | None:
        return _row(
            self._run(
                "SELECT * FROM device_authorizations WHERE device_code_hash = ?",
                (device_code_hash,),
            ).fetchone()
        )

    def get(self, daid: str) -> DeviceAuthorization | None:
        return _row(
            self._run("SELECT * FROM device_authorizations WHERE id = ?", (daid,)).fetchone()
        )

    def record_poll(self, daid: str, seen_polls: int, now: float, interval: int) -> bool:
        """Record a poll at *now* with *interval* if nobody polled since we read the row."""
        cur = self._run(
            "UPDATE device_authorizations SET last_poll_at = ?, polls = polls + 1, "
            "poll_interval = ? WHERE id = ? AND polls = ? AND status IN ('pending', 'claimed')",
            (now, interval, daid, seen_polls),
        )
        return cur.rowcount == 1

    def slow_down(self, daid: str, now: float, step: int) -> None:
        """A poll came too soon: the interval grows for this and every later poll."""
        self._run(
            "UPDATE device_authorizations SET last_poll_at = ?, polls = polls + 1, "
            "poll_interval = poll_interval + ? WHERE id = ?",
            (now, step, daid),
        )

    def redeem(self, daid: str, grant_hash: bytes, grant_expires_at: float) -> bool:
        """Approved -> redeemed with the token's hash; once."""
        cur = self._run(
            "UPDATE device_authorizations SET status = 'redeemed', grant_hash = ?, "
            "grant_expires_at = ? WHERE id = ? AND status = 'approved'",
            (grant_hash, grant_expires_at, daid),
        )
        return cur.rowcount == 1

    # --- the kiosk's side ---

    def by_user_code(self, user_code_mac: bytes) -> DeviceAuthorization | None:
        return _row(
            self._run(
                "SELECT * FROM device_authorizations WHERE user_code_mac = ?", (user_code_mac,)
            ).fetchone()
        )

    def claim(self, daid: str, kiosk_session: str, nonce: bytes, now: float) -> bool:
        """Pending -> claimed by one kiosk session: the user code's single use."""
        cur = self._run(
            "UPDATE device_authorizations SET status = 'claimed', kiosk_session = ?, nonce = ? "
            "WHERE id = ? AND status = 'pending' AND expires_at > ?",
            (kiosk_session, nonce, daid, now),
        )
        return cur.rowcount == 1

    def approve(self, daid: str, kiosk_session: str, enrollment_id: str, subject: str) -> bool:
        """Claimed (by this kiosk session, unexpired) -> approved; once."""
        now = time.time()
        cur = self._run(
            "UPDATE device_authorizations SET status = 'approved', enrollment_id = ?, "
            "subject = ?, decided_at = ?, nonce = NULL WHERE id = ? AND status = 'claimed' "
            "AND kiosk_session = ? AND expires_at > ?",
            (enrollment_id, subject, now, daid, kiosk_session, now),
        )
        return cur.rowcount == 1

    def deny(self, daid: str, kiosk_session: str) -> bool:
        """Claimed (by this kiosk session) -> denied; once."""
        cur = self._run(
            "UPDATE device_authorizations SET status = 'denied', decided_at = ?, nonce = NULL "
            "WHERE id = ? AND status = 'claimed' AND kiosk_session = ?",
            (time.time(), daid, kiosk_session),
        )
        return cur.rowcount == 1

    def by_enrollment(self, enrollment_id: str) -> DeviceAuthorization | None:
        return _row(
            self._run(
                "SELECT * FROM device_authorizations WHERE enrollment_id = ?", (enrollment_id,)
            ).fetchone()
        )

    # --- user-code attempt counters (fixed windows) ---

    def count_attempt(self, bucket: str, window: int, now: float) -> int:
        """Count one attempt in *bucket*'s current window; the window's count so far."""
        start = int(now // window) * window
        with self._store.transaction() as tx:
            tx.run("DELETE FROM device_code_attempts WHERE window_start < ?", (start - window,))
            row = tx.run(
                "INSERT INTO device_code_attempts (bucket, window_start, attempts) "
                "VALUES (?, ?, 1) ON CONFLICT (bucket, window_start) "
                "DO UPDATE SET attempts = device_code_attempts.attempts + 1 RETURNING attempts",
                (bucket, start),
            ).fetchone()
        assert row is not None  # RETURNING gives the row it inserted or updated
        return int(row[0])
