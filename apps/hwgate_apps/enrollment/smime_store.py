"""Persistence of the S/MIME part of an enrollment: the card's e-mail certificates and
what was issued from them.

One row per enrollment, written when the kiosk's proof is accepted (the card's
9C/9D certificates as read at the kiosk). The phone's request claims the row
once with a conditional UPDATE (``available`` -> ``issuing``), as the main
store does for activation codes, so two requests can never both get a
certificate or the key-management key.

It runs its SQL through the main :class:`.store.Store` (``?`` placeholders,
named columns, one statement each), so it follows that store to whatever
database it is on. The table is created here with ``IF NOT EXISTS``; where the
main store keeps a list of migrations, this DDL is one more entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# The table is migration 3 in :mod:`.migrations`.
_COLUMNS = ("enrollment_id", "card_sign_cert", "card_km_cert", "emails", "status",
            "signing_serial", "signing_cert", "key_recovered", "issued_at")  # fmt: skip


@dataclass(frozen=True)
class SmimeRecord:
    """One row of ``smime_credentials``."""

    enrollment_id: str
    card_sign_cert: bytes | None
    card_km_cert: bytes | None
    emails: tuple[str, ...]
    status: str
    signing_serial: str | None
    signing_cert: bytes | None
    key_recovered: bool
    issued_at: float | None


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class SmimeStore:
    """The ``smime_credentials`` table, through the enrollment store's connection."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self._store._run(sql, args)

    def add(self, eid: str, sign: bytes | None, km: bytes | None, emails: tuple[str, ...]) -> None:
        self._run(
            "INSERT INTO smime_credentials (enrollment_id, card_sign_cert, card_km_cert, "
            "emails, status) VALUES (?, ?, ?, ?, 'available')",
            (eid, sign, km, "\n".join(emails)),
        )

    def get(self, eid: str) -> SmimeRecord | None:
        row = self._run(
            f"SELECT {', '.join(_COLUMNS)} FROM smime_credentials WHERE enrollment_id = ?", (eid,)
        ).fetchone()
        if row is None:
            return None
        return SmimeRecord(
            enrollment_id=row[0], card_sign_cert=_blob(row[1]), card_km_cert=_blob(row[2]),
            emails=tuple(e for e in str(row[3]).split("\n") if e), status=row[4],
            signing_serial=row[5], signing_cert=_blob(row[6]), key_recovered=bool(row[7]),
            issued_at=row[8],
        )  # fmt: skip

    def claim(self, eid: str) -> bool:
        """``available`` -> ``issuing``; False if it is not available (used or in use)."""
        cur = self._run(
            "UPDATE smime_credentials SET status = 'issuing' "
            "WHERE enrollment_id = ? AND status = 'available'",
            (eid,),
        )
        return bool(cur.rowcount == 1)

    def release(self, eid: str) -> None:
        """Back to ``available`` after a failure, so the phone may try again."""
        self._run(
            "UPDATE smime_credentials SET status = 'available' "
            "WHERE enrollment_id = ? AND status = 'issuing'",
            (eid,),
        )

    def record_issued(self, eid: str, serial: str, der: bytes, key_recovered: bool) -> None:
        self._run(
            "UPDATE smime_credentials SET status = 'issued', signing_serial = ?, "
            "signing_cert = ?, key_recovered = ?, issued_at = ? "
            "WHERE enrollment_id = ? AND status = 'issuing'",
            (serial, der, int(key_recovered), time.time(), eid),
        )
