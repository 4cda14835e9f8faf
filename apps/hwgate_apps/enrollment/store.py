"""Persistence: challenges and enrollments, on SQLite or PostgreSQL.

Every single-use rule is one conditional UPDATE whose row count decides
(``... WHERE used = 0``), so two concurrent requests can never both win, in
one process or in several sharing a PostgreSQL database. Activation codes are
not stored (see :mod:`.activation`).

The backend comes from the ``database`` setting (:mod:`.db`); the schema from
:mod:`.migrations`, applied when the store opens. A new table is one new entry
there (see its docstring); queries here name their columns, so a migration
that adds a column breaks none of them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from hwgate_apps.enrollment import db as dbapi
from hwgate_apps.enrollment.migrations import migrate

# Runs one statement inside a transaction: ``run(sql, args)`` (Transaction.run).
Run = Callable[..., dbapi.Result]


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


_COLUMNS = [f.name for f in fields(Enrollment)]
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM enrollments"
_INSERT = (
    f"INSERT INTO enrollments ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


class Store:
    """The database; safe to share between the server's worker threads."""

    def __init__(self, database: str | Path) -> None:
        """*database*: a path (SQLite) or a URL (see :func:`.db.database_url`)."""
        self._db = dbapi.connect(dbapi.database_url(database))
        try:
            migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def _run(self, sql: str, args: Sequence[Any] = ()) -> dbapi.Result:
        """One statement, ``?`` placeholders, in its own transaction."""
        return self._db.run(sql, args)

    def transaction(self) -> contextlib.AbstractContextManager[dbapi.Transaction]:
        """Several statements that commit together (``tx.run(sql, args)``)."""
        return self._db.transaction()

    def close(self) -> None:
        self._db.close()

    # --- challenges ---

    def add_challenge(self, cid: str, challenge: bytes, kiosk_session: str, ttl: float) -> None:
        self._run(
            "INSERT INTO challenges (id, challenge, kiosk_session, expires_at) VALUES (?,?,?,?)",
            (cid, challenge, kiosk_session, time.time() + ttl),
        )

    def consume_challenge(self, cid: str, kiosk_session: str) -> bytes | None:
        """The challenge if it is unused, unexpired and bound to this kiosk session; once."""
        row = self._run(
            "UPDATE challenges SET used = 1 WHERE id = ? AND kiosk_session = ? "
            "AND used = 0 AND expires_at > ? RETURNING challenge",
            (cid, kiosk_session, time.time()),
        ).fetchone()
        return bytes(row[0]) if row else None

    # --- enrollments ---

    def add_enrollment(self, e: Enrollment) -> None:
        self._run(_INSERT, astuple(e))

    def get(self, eid: str) -> Enrollment | None:
        row = self._run(f"{_SELECT} WHERE id = ?", (eid,)).fetchone()
        return _enrollment(row) if row else None

    def by_fasc_n(self, fasc_n: str) -> list[Enrollment]:
        rows = self._run(f"{_SELECT} WHERE fasc_n = ? ORDER BY created_at", (fasc_n,)).fetchall()
        return [_enrollment(row) for row in rows]

    def active_credentials(self, fasc_n: str) -> int:
        """Derived credentials of this cardholder that are issued and not revoked."""
        row = self._run(
            "SELECT COUNT(*) FROM enrollments WHERE fasc_n = ? AND status = 'issued'", (fasc_n,)
        ).fetchone()
        return int(row[0]) if row else 0

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

    def claim_for_issuance(self, eid: str, fasc_n: str, cap: int) -> str:
        """pending -> issuing, unless the cardholder already has *cap* credentials issued
        or being issued: "claimed", "used" (not pending any more) or "cap".

        One transaction under a per-cardholder lock, so servers issuing at once (threads
        or processes) cannot each see room under the cap and all take it.
        """
        with self.transaction() as tx:
            dbapi.lock(tx, f"cardholder {fasc_n}")
            status = tx.run("SELECT status FROM enrollments WHERE id = ?", (eid,)).fetchone()
            if status is None or status[0] != "pending":
                return "used"
            row = tx.run(
                "SELECT COUNT(*) FROM enrollments WHERE fasc_n = ? AND id != ? "
                "AND status IN ('issuing', 'issued')",
                (fasc_n, eid),
            ).fetchone()
            if row is not None and int(row[0]) >= cap:
                return "cap"
            moved = tx.run(
                "UPDATE enrollments SET status = 'issuing' WHERE id = ? AND status = 'pending'",
                (eid,),
            )
            return "claimed" if moved.rowcount == 1 else "used"

    def record_issued(
        self, eid: str, serial: str, der: bytes, then: Callable[[Run], None] | None = None
    ) -> None:
        """Mark issued; *then* runs in the same transaction (the outbox notice)."""
        with self.transaction() as tx:
            cur = tx.run(
                "UPDATE enrollments SET status = 'issued', derived_serial = ?, "
                "derived_cert = ?, issued_at = ? WHERE id = ? AND status = 'issuing'",
                (serial, der, time.time(), eid),
            )
            if cur.rowcount == 1 and then is not None:
                then(tx.run)

    def revoke(self, eid: str, then: Callable[[Run], None] | None = None) -> bool:
        """Revoke once; *then* runs in the same transaction only if this call revoked it."""
        with self.transaction() as tx:
            cur = tx.run(
                "UPDATE enrollments SET status = 'revoked', revoked_at = ? "
                "WHERE id = ? AND status != 'revoked'",
                (time.time(), eid),
            )
            if cur.rowcount == 1 and then is not None:
                then(tx.run)
        return cur.rowcount == 1

    def issued(self) -> list[Enrollment]:
        """Every enrollment whose derived credential is issued and not revoked."""
        rows = self._run(f"{_SELECT} WHERE status = 'issued' ORDER BY issued_at").fetchall()
        return [_enrollment(row) for row in rows]


def _enrollment(row: tuple[Any, ...]) -> Enrollment:
    """A row as an Enrollment; BLOBs as bytes whichever driver read them."""
    values: list[Any] = [bytes(v) if isinstance(v, memoryview | bytearray) else v for v in row]
    return Enrollment(*values)
