"""SQLite persistence: challenges and enrollments.

Every single-use rule is one conditional UPDATE whose row count decides
(``... WHERE used = 0``), so two concurrent requests can never both win.
Activation codes are not stored (see :mod:`.activation`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwgate_apps.enrollment.lifestore import LIFECYCLE_SCHEMA

# Runs one statement inside a transaction (see Store.transaction).
Run = Callable[..., sqlite3.Cursor]

SCHEMA = """
CREATE TABLE IF NOT EXISTS challenges (
    id TEXT PRIMARY KEY,
    challenge BLOB NOT NULL,
    kiosk_session TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS enrollments (
    id TEXT PRIMARY KEY,
    fasc_n TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    subject TEXT NOT NULL,
    piv_auth_cert BLOB NOT NULL,
    kiosk_origin TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,            -- pending, issuing, issued, revoked
    code_issue INTEGER NOT NULL,
    code_expires_at REAL NOT NULL,
    attempts_left INTEGER NOT NULL,
    derived_serial TEXT,
    derived_cert BLOB,
    issued_at REAL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS enrollments_fasc_n ON enrollments (fasc_n);
"""


@dataclass(frozen=True)
class Enrollment:
    """One row of `enrollments`."""

    id: str
    fasc_n: str
    card_uuid: str
    subject: str
    piv_auth_cert: bytes
    kiosk_origin: str
    created_at: float
    status: str
    code_issue: int
    code_expires_at: float
    attempts_left: int
    derived_serial: str | None
    derived_cert: bytes | None
    issued_at: float | None
    revoked_at: float | None


class Store:
    """The database; safe to share between the server's worker threads."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._db.executescript(LIFECYCLE_SCHEMA)
        self._lock = threading.Lock()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Run]:
        """One transaction: ``run(sql, args)`` inside it; commit at the end, rollback on error.

        Why: an issuance and its notice in the outbox must commit together
        (:mod:`.outbox`), or a crash between them loses or invents a notice.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield lambda sql, args=(): self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- challenges ---

    def add_challenge(self, cid: str, challenge: bytes, kiosk_session: str, ttl: float) -> None:
        self._run(
            "INSERT INTO challenges (id, challenge, kiosk_session, expires_at) VALUES (?,?,?,?)",
            (cid, challenge, kiosk_session, time.time() + ttl),
        )

    def consume_challenge(self, cid: str, kiosk_session: str) -> bytes | None:
        """The challenge if it is unused, unexpired and bound to this kiosk session; once."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE challenges SET used = 1 WHERE id = ? AND kiosk_session = ? "
                "AND used = 0 AND expires_at > ? RETURNING challenge",
                (cid, kiosk_session, time.time()),
            )
            row = cur.fetchone()
        return bytes(row[0]) if row else None

    # --- enrollments ---

    def add_enrollment(self, e: Enrollment) -> None:
        self._run(
            "INSERT INTO enrollments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            tuple(e.__dict__.values()),
        )

    def get(self, eid: str) -> Enrollment | None:
        row = self._run("SELECT * FROM enrollments WHERE id = ?", (eid,)).fetchone()
        return Enrollment(*row) if row else None

    def by_fasc_n(self, fasc_n: str) -> list[Enrollment]:
        rows = self._run(
            "SELECT * FROM enrollments WHERE fasc_n = ? ORDER BY created_at", (fasc_n,)
        ).fetchall()
        return [Enrollment(*row) for row in rows]

    def active_credentials(self, fasc_n: str) -> int:
        """Derived credentials of this cardholder that are issued and not revoked."""
        row = self._run(
            "SELECT COUNT(*) FROM enrollments WHERE fasc_n = ? AND status = 'issued'", (fasc_n,)
        ).fetchone()
        return int(row[0])

    def spend_attempt(self, eid: str) -> bool:
        """Take one code attempt; False if none is left, the code expired or is used."""
        cur = self._run(
            "UPDATE enrollments SET attempts_left = attempts_left - 1 WHERE id = ? "
            "AND status = 'pending' AND attempts_left > 0 AND code_expires_at > ?",
            (eid, time.time()),
        )
        return cur.rowcount == 1

    def set_status(self, eid: str, new: str, *, old: str) -> bool:
        """Move from *old* to *new*; False if someone else moved it first."""
        cur = self._run(
            "UPDATE enrollments SET status = ? WHERE id = ? AND status = ?", (new, eid, old)
        )
        return cur.rowcount == 1

    def record_issued(
        self, eid: str, serial: str, der: bytes, then: Callable[[Run], None] | None = None
    ) -> None:
        """Mark issued; *then* runs in the same transaction (the outbox notice)."""
        with self.transaction() as run:
            cur = run(
                "UPDATE enrollments SET status = 'issued', derived_serial = ?, "
                "derived_cert = ?, issued_at = ? WHERE id = ? AND status = 'issuing'",
                (serial, der, time.time(), eid),
            )
            if cur.rowcount == 1 and then is not None:
                then(run)

    def revoke(self, eid: str, then: Callable[[Run], None] | None = None) -> bool:
        """Revoke once; *then* runs in the same transaction only if this call revoked it."""
        with self.transaction() as run:
            cur = run(
                "UPDATE enrollments SET status = 'revoked', revoked_at = ? "
                "WHERE id = ? AND status != 'revoked'",
                (time.time(), eid),
            )
            if cur.rowcount == 1 and then is not None:
                then(run)
        return cur.rowcount == 1

    def issued(self) -> list[Enrollment]:
        """Every enrollment whose derived credential is issued and not revoked."""
        rows = self._run(
            "SELECT * FROM enrollments WHERE status = 'issued' ORDER BY issued_at"
        ).fetchall()
        return [Enrollment(*row) for row in rows]
