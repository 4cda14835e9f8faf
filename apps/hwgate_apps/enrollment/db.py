"""The database connection of the enrollment server: SQLite or PostgreSQL behind one API.

Chosen by the ``database`` setting (:func:`database_url`): a plain path is an
SQLite file (the embedded default); ``sqlite:///abs/path`` or
``sqlite:relative/path`` names one explicitly; ``postgresql://...`` (any libpq
URI, e.g. ``postgresql:///enroll?host=/run/postgresql``) is a PostgreSQL
database that several server processes may share.

SQL is written once, in the dialect both understand, with ``?`` placeholders
(SQLite's); the PostgreSQL backend rewrites them to ``%s``. Every statement
runs on its own (autocommit): the store's single-use rules are single
conditional UPDATEs, which both databases make atomic (PostgreSQL re-checks
the WHERE clause of a row another transaction changed before applying it).
Work that needs several statements at once uses :meth:`Database.transaction`.

SQLite: one connection, serialized by a lock (one writer at a time anyway).
PostgreSQL: psycopg 3 with its own connection pool (psycopg_pool, from the
psycopg project), so the server's worker threads each get a connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_SCHEMES = {"sqlite": SQLITE, "postgresql": POSTGRESQL, "postgres": POSTGRESQL}
# Connections one server process keeps to PostgreSQL at most (Starlette's thread
# pool has 40 threads; requests beyond this many wait for a free connection).
PG_POOL_MAX = 10
PG_CONNECT_TIMEOUT = 30.0


class DatabaseError(Exception):
    """The database setting is wrong, or its driver is missing."""


def dialect_of(url: str) -> str | None:
    """``sqlite`` / ``postgresql`` for a URL of one of them, None for a plain path."""
    return _SCHEMES.get(urlsplit(url).scheme.lower())


def database_url(value: str | Path, base: Path | None = None) -> str:
    """The ``database`` setting as a URL; relative SQLite paths are taken from *base*."""
    text = str(value)
    dialect = dialect_of(text)
    if dialect == POSTGRESQL:
        return text
    path = Path(unquote(urlsplit(text).path)) if dialect == SQLITE else Path(text)
    if base is not None and not path.is_absolute():
        path = base / path
    return f"sqlite://{quote(str(path.resolve()))}"


@dataclass
class Result:
    """A statement's rows (all fetched) and the number of rows it changed."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.rows)


class Transaction(Protocol):
    """Statements inside one transaction (see :meth:`Database.transaction`)."""

    dialect: str

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result: ...

    def script(self, sql: str) -> None: ...


class Database(Protocol):
    """What the store needs from a backend."""

    dialect: str

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result: ...

    def transaction(self) -> contextlib.AbstractContextManager[Transaction]: ...

    def close(self) -> None: ...


def lock(tx: Transaction, name: str) -> None:
    """Serialize the transactions that lock *name*, until *tx* ends (in every process).

    PostgreSQL: a transaction-scoped advisory lock on a 63-bit hash of *name*.
    SQLite: nothing more to do, :meth:`SqliteDatabase.transaction` already holds the
    database's write lock (``BEGIN IMMEDIATE``).
    """
    if tx.dialect == POSTGRESQL:
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1
        tx.run("SELECT pg_advisory_xact_lock(?)", (key,))


def connect(url: str) -> Database:
    """The backend for *url* (from :func:`database_url`)."""
    if dialect_of(url) == POSTGRESQL:
        return PostgresDatabase(url)
    return SqliteDatabase(Path(unquote(urlsplit(url).path)))


# --- SQLite ---


def _sqlite_result(cur: sqlite3.Cursor) -> Result:
    rows = cur.fetchall() if cur.description else []
    return Result(rows, cur.rowcount)  # rowcount is final once RETURNING rows are read


class _SqliteTx:
    dialect = SQLITE

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        return _sqlite_result(self._db.execute(sql, tuple(args)))

    def script(self, sql: str) -> None:
        for statement in split_statements(sql):
            self._db.execute(statement)


def split_statements(script: str) -> list[str]:
    """SQL statements of *script*, split where SQLite itself says one is complete."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


class SqliteDatabase:
    """One SQLite file; safe to share between threads (a lock serializes statements)."""

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        # Two processes on one file wait for each other's write up to `timeout` seconds.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with self._lock:
            return _sqlite_result(self._db.execute(sql, tuple(args)))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE: the write lock from the start, so nothing interleaves."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


# --- PostgreSQL ---


def pg_sql(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` outside string literals (splitting on
    ``'`` leaves the literals at the odd indexes), and every ``%`` to ``%%``: psycopg
    reads ``%`` as a placeholder everywhere, inside literals too."""
    parts = sql.replace("%", "%%").split("'")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("?", "%s")
    return "'".join(parts)


class _PgTx:
    dialect = POSTGRESQL

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        return _pg_execute(self._conn, sql, args)

    def script(self, sql: str) -> None:
        self._conn.execute(sql)  # no parameters: several statements at once are allowed


def _pg_execute(conn: Any, sql: str, args: Sequence[Any]) -> Result:
    cur = conn.execute(pg_sql(sql), tuple(args))
    rows = cur.fetchall() if cur.description else []
    return Result(rows, cur.rowcount)


class PostgresDatabase:
    """A PostgreSQL database through a psycopg connection pool (autocommit connections)."""

    dialect = POSTGRESQL

    def __init__(self, url: str) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise DatabaseError(
                "a postgresql:// database needs psycopg 3: pip install 'hwgate-apps[postgresql]'"
            ) from None
        self._pool = ConnectionPool(
            url, min_size=1, max_size=PG_POOL_MAX, kwargs={"autocommit": True},
            timeout=PG_CONNECT_TIMEOUT, open=False, name="enrollment",
        )  # fmt: skip
        self._pool.open(wait=True, timeout=PG_CONNECT_TIMEOUT)

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with self._pool.connection() as conn:
            return _pg_execute(conn, sql, args)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

    def close(self) -> None:
        self._pool.close()
