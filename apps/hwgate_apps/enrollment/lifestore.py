"""Tables and SQL of the credential lifecycle: contacts, revocations, CRLs, the outbox.

Every statement of the lifecycle features (issue #23 items 1-3) is here, so a
port of the store to another database (the PostgreSQL migrations) has one
place to look. The SQL is portable: TEXT/INTEGER/REAL/BLOB, ``?`` parameters,
``ON CONFLICT DO NOTHING`` (SQLite >= 3.24 and PostgreSQL both take it).

They live in their own tables (not new columns of ``enrollments``) so the
``Enrollment`` row type and its ``SELECT *`` stay as they are.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwgate_apps.enrollment.store import Run, Store


@contextlib.contextmanager
def _tx(store: Store) -> Iterator[Run]:
    """One transaction of *store*, as its ``run(sql, args)``."""
    with store.transaction() as tx:
        yield tx.run


# The tables are migration 2 in :mod:`.migrations`.


@dataclass(frozen=True)
class OutboxRow:
    """One notice; ``message`` is the whole RFC 5322 message as it will be sent."""

    id: str
    message_id: str
    kind: str
    enrollment_id: str
    recipient: str
    message: bytes
    created_at: float
    attempts: int
    next_attempt_at: float
    sent_at: float | None
    last_error: str | None


def one(store: Store, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """All rows of one statement, in its own transaction."""
    with _tx(store) as run:
        return list(run(sql, args).fetchall())


# --- contacts ---


def set_contact(store: Store, eid: str, email: str) -> None:
    with _tx(store) as run:
        run(
            "INSERT INTO enrollment_contacts (enrollment_id, email) VALUES (?, ?) "
            "ON CONFLICT DO NOTHING",
            (eid, email),
        )


def contact(store: Store, eid: str) -> str | None:
    rows = one(store, "SELECT email FROM enrollment_contacts WHERE enrollment_id = ?", (eid,))
    return str(rows[0][0]) if rows else None


# --- revocations ---


def add_revocation(run: Run, eid: str, serial: str, reason: str) -> None:
    run(
        "INSERT INTO revocations (enrollment_id, serial, reason, revoked_at) VALUES (?,?,?,?) "
        "ON CONFLICT DO NOTHING",
        (eid, serial, reason, time.time()),
    )


def revoked_serials(store: Store) -> list[tuple[str, float, str]]:
    """(serial hex, revoked at, CRLReason value) of every revoked derived certificate:
    the PIV Authentication one and the S/MIME signing one of a revoked enrollment
    (``smime_credentials``, :mod:`.smime_store`) -- a revoked card ends both."""
    rows = one(
        store,
        "SELECT e.derived_serial, COALESCE(r.revoked_at, e.revoked_at), "
        "COALESCE(r.reason, 'unspecified') FROM enrollments e "
        "LEFT JOIN revocations r ON r.enrollment_id = e.id "
        "WHERE e.status = 'revoked' AND e.derived_serial IS NOT NULL "
        "UNION ALL "
        "SELECT s.signing_serial, COALESCE(r.revoked_at, e.revoked_at), "
        "COALESCE(r.reason, 'unspecified') FROM smime_credentials s "
        "JOIN enrollments e ON e.id = s.enrollment_id "
        "LEFT JOIN revocations r ON r.enrollment_id = e.id "
        "WHERE e.status = 'revoked' AND s.signing_serial IS NOT NULL ORDER BY 2",
    )
    return [(str(s), float(at), str(reason)) for s, at, reason in rows]  # type: ignore[arg-type]


# --- CRLs ---


def latest_crl(store: Store, issuer: str) -> tuple[int, bytes, float] | None:
    """(number, DER, next update) of the newest CRL of *issuer*."""
    rows = one(
        store,
        "SELECT number, der, next_update FROM crls WHERE issuer = ? ORDER BY number DESC LIMIT 1",
        (issuer,),
    )
    if not rows:
        return None
    number, der, next_update = rows[0]
    return int(number), bytes(der), float(next_update)  # type: ignore[call-overload,arg-type]


def next_crl_number(store: Store, issuer: str) -> int:
    rows = one(store, "SELECT COALESCE(MAX(number), 0) FROM crls WHERE issuer = ?", (issuer,))
    return int(rows[0][0]) + 1  # type: ignore[call-overload]


def add_crl(store: Store, issuer: str, number: int, der: bytes, this: float, nxt: float) -> bool:
    """False when another writer stored this number first (its CRL stands)."""
    with _tx(store) as run:
        cur = run(
            "INSERT INTO crls (issuer, number, der, this_update, next_update) "
            "VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            (issuer, number, der, this, nxt),
        )
        return cur.rowcount == 1


# --- outbox ---


def add_outbox(run: Run, row: OutboxRow) -> None:
    run(
        "INSERT INTO outbox (id, message_id, kind, enrollment_id, recipient, message, "
        "created_at, attempts, next_attempt_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (row.id, row.message_id, row.kind, row.enrollment_id, row.recipient, row.message,
         row.created_at, row.attempts, row.next_attempt_at),
    )  # fmt: skip


def due_outbox(store: Store, now: float, limit: int = 20) -> list[OutboxRow]:
    rows = one(
        store,
        "SELECT * FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ? "
        "ORDER BY next_attempt_at LIMIT ?",
        (now, limit),
    )
    return [OutboxRow(*r) for r in rows]  # type: ignore[arg-type]


def claim_outbox(store: Store, row: OutboxRow, lease_until: float) -> bool:
    """Take *row* for one delivery attempt; False if another worker took it first."""
    with _tx(store) as run:
        cur = run(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1 "
            "WHERE id = ? AND sent_at IS NULL AND next_attempt_at = ?",
            (lease_until, row.id, row.next_attempt_at),
        )
        return cur.rowcount == 1


def outbox_sent(store: Store, oid: str) -> None:
    with _tx(store) as run:
        run("UPDATE outbox SET sent_at = ?, last_error = NULL WHERE id = ?", (time.time(), oid))


def outbox_failed(store: Store, oid: str, error: str, retry_at: float) -> None:
    with _tx(store) as run:
        run(
            "UPDATE outbox SET last_error = ?, next_attempt_at = ? WHERE id = ?",
            (error[:500], retry_at, oid),
        )


def outbox_of(store: Store, eid: str) -> list[OutboxRow]:
    rows = one(store, "SELECT * FROM outbox WHERE enrollment_id = ? ORDER BY created_at", (eid,))
    return [OutboxRow(*r) for r in rows]  # type: ignore[arg-type]
