"""The enrollment store on both backends (SQLite file, private PostgreSQL cluster),
its schema migrations, and the database setting."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwgate_apps.enrollment import db as dbapi
from hwgate_apps.enrollment.config import load_config
from hwgate_apps.enrollment.migrations import (
    MIGRATIONS,
    Migration,
    SchemaError,
    migrate,
    schema_version,
)
from hwgate_apps.enrollment.store import Enrollment, Store

FASC_N = "1" * 32

# The schema of main before migrations (9006628, store.SCHEMA), verbatim: a database
# that server made must open on this one with its data.
MAIN_SCHEMA = """
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


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each backend (PostgreSQL's cluster starts on first use)."""
    if request.param == "sqlite":
        return dbapi.database_url(tmp_path / "enrollment.sqlite3")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = Store(url)
    yield s
    s.close()


def enrollment(eid: str, **over: object) -> Enrollment:
    values: dict[str, object] = dict(
        id=eid, fasc_n=FASC_N, card_uuid="uuid", subject="CN=Alice",
        piv_auth_cert=b"\x30\x82\x00\xff" * 8, kiosk_origin="https://k", created_at=time.time(),
        status="pending", code_issue=1, code_expires_at=time.time() + 600, attempts_left=2,
        derived_serial=None, derived_cert=None, issued_at=None, revoked_at=None,
    )  # fmt: skip
    values.update(over)
    return Enrollment(**values)  # type: ignore[arg-type]


def test_a_challenge_is_consumed_once_and_only_by_its_kiosk_session(store: Store) -> None:
    store.add_challenge("c1", b"\x00\xffchallenge", "kiosk-a", ttl=60)
    assert store.consume_challenge("c1", "kiosk-b") is None
    assert store.consume_challenge("c1", "kiosk-a") == b"\x00\xffchallenge"
    assert store.consume_challenge("c1", "kiosk-a") is None
    store.add_challenge("c2", b"x", "kiosk-a", ttl=-1)  # already expired
    assert store.consume_challenge("c2", "kiosk-a") is None


def test_an_enrollment_goes_pending_issuing_issued_revoked(store: Store) -> None:
    store.add_enrollment(enrollment("e1"))
    assert store.get("e1") == enrollment("e1", created_at=store.get("e1").created_at,  # type: ignore[union-attr]
                                         code_expires_at=store.get("e1").code_expires_at)  # type: ignore[union-attr]  # fmt: skip
    assert store.spend_attempt("e1") and store.spend_attempt("e1")
    assert not store.spend_attempt("e1")  # two attempts, both spent
    assert store.set_status("e1", "issuing", old="pending")
    assert not store.set_status("e1", "issuing", old="pending")
    store.record_issued("e1", "0A1B", b"\x30\x01der")
    row = store.get("e1")
    assert row is not None and (row.status, row.derived_serial, row.derived_cert) == (
        "issued", "0A1B", b"\x30\x01der")  # fmt: skip
    assert isinstance(row.piv_auth_cert, bytes)
    assert store.active_credentials(FASC_N) == 1
    assert store.revoke("e1") and not store.revoke("e1")
    assert store.active_credentials(FASC_N) == 0
    assert [e.id for e in store.by_fasc_n(FASC_N)] == ["e1"]
    assert store.get("nope") is None


def test_an_expired_code_spends_no_attempt(store: Store) -> None:
    store.add_enrollment(enrollment("e1", code_expires_at=time.time() - 1))
    assert not store.spend_attempt("e1")


def test_of_many_threads_claiming_one_enrollment_exactly_one_wins(store: Store) -> None:
    store.add_enrollment(enrollment("e1", attempts_left=100))
    wins: list[bool] = []
    start = threading.Barrier(16)

    def claim() -> None:
        start.wait()
        wins.append(store.spend_attempt("e1") and store.set_status("e1", "issuing", old="pending"))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(wins) == [False] * 15 + [True]


def test_claims_for_one_cardholder_at_once_stop_at_the_cap(store: Store) -> None:
    for i in range(12):
        store.add_enrollment(enrollment(f"e{i}"))
    store.add_enrollment(enrollment("other", fasc_n="2" * 32))
    start = threading.Barrier(12)
    outcomes: list[str] = []

    def claim(i: int) -> None:
        start.wait()
        outcomes.append(store.claim_for_issuance(f"e{i}", FASC_N, cap=3))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["cap"] * 9 + ["claimed"] * 3
    assert store.claim_for_issuance("e0", FASC_N, cap=100) in ("used", "claimed")
    assert store.claim_for_issuance("other", "2" * 32, cap=1) == "claimed"  # its own count
    claimed = [e for e in store.by_fasc_n(FASC_N) if e.status == "issuing"]
    assert store.claim_for_issuance(claimed[0].id, FASC_N, cap=100) == "used"


def test_reopening_applies_no_migration_again(url: str) -> None:
    Store(url).close()
    db = dbapi.connect(url)
    try:
        assert migrate(db) == []
        assert schema_version(db) == len(MIGRATIONS)
    finally:
        db.close()


def test_a_new_migration_is_one_entry_and_runs_once_on_both_backends(url: str) -> None:
    Store(url).close()
    extra = Migration(len(MIGRATIONS) + 1, "mailbox (test)", """
    CREATE TABLE mailbox (
        id {autoid},
        body {blob} NOT NULL,
        created_at {float} NOT NULL
    );
    """)  # fmt: skip
    db = dbapi.connect(url)
    try:
        assert migrate(db, (*MIGRATIONS, extra)) == [extra.version]
        assert migrate(db, (*MIGRATIONS, extra)) == []
        db.run("INSERT INTO mailbox (body, created_at) VALUES (?, ?)", (b"\x00mail", 1.5))
        db.run("INSERT INTO mailbox (body, created_at) VALUES (?, ?)", (b"\x01mail", 2.5))
        rows = db.run("SELECT id, body, created_at FROM mailbox ORDER BY id").fetchall()
        assert [(bytes(b), c) for _, b, c in rows] == [(b"\x00mail", 1.5), (b"\x01mail", 2.5)]
        assert rows[0][0] < rows[1][0]  # ids assigned by the database
        # A server that does not know version 2 refuses this database.
        with pytest.raises(SchemaError, match="does not know"):
            migrate(db)
        # Another branch's "version 2" is caught, not run on top.
        other = Migration(extra.version, "device authorizations", "SELECT 1;")
        with pytest.raises(SchemaError, match="mailbox"):
            migrate(db, (*MIGRATIONS, other))
    finally:
        db.close()


def test_a_failed_migration_leaves_nothing_behind(url: str) -> None:
    broken = Migration(len(MIGRATIONS) + 1, "broken", """
    CREATE TABLE half_done (id INTEGER);
    INSERT INTO no_such_table VALUES (1);
    """)  # fmt: skip
    db = dbapi.connect(url)
    try:
        with pytest.raises(Exception, match="no_such_table"):
            migrate(db, (*MIGRATIONS, broken))
        # Not even migration 1 is recorded: the whole step was one transaction.
        assert migrate(db) == [m.version for m in MIGRATIONS]
        with pytest.raises(Exception, match="half_done"):
            db.run("SELECT * FROM half_done")
    finally:
        db.close()


def test_a_database_of_the_server_before_migrations_is_adopted_with_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "enrollment.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MAIN_SCHEMA)
    row = enrollment("old-1", status="issued", derived_serial="7F", derived_cert=b"\x30\x03abc")
    old.execute(
        f"INSERT INTO enrollments VALUES ({','.join('?' * 15)})", tuple(row.__dict__.values())
    )
    old.execute("INSERT INTO challenges (id, challenge, kiosk_session, expires_at) "
                "VALUES ('c-old', x'0102', 'k', ?)", (time.time() + 60,))  # fmt: skip
    old.commit()
    old.close()
    store = Store(path)  # the `database = "path"` setting, as before
    try:
        assert store.get("old-1") == row
        assert store.active_credentials(FASC_N) == 1
        assert store.consume_challenge("c-old", "k") == b"\x01\x02"
        versions = store._run("SELECT version, name FROM schema_migrations").fetchall()
        assert versions == [(m.version, m.name) for m in MIGRATIONS]  # every step, once
    finally:
        store.close()


def test_the_database_setting_takes_a_path_or_a_url(tmp_path: Path) -> None:
    base = {
        "origin": "https://e", "piv_issuer_ca": "p.pem", "issuing_ca_cert": "i.pem",
        "hwgate_target": "x", "hwgate_cacert": "c", "hwgate_cert": "c", "hwgate_key": "k",
    }  # fmt: skip
    head = "".join(f'{k} = "{v}"\n' for k, v in base.items())
    cases = {
        '"db/enroll.sqlite3"': f"sqlite://{tmp_path}/db/enroll.sqlite3",  # as before
        '"sqlite:db/e.sqlite3"': f"sqlite://{tmp_path}/db/e.sqlite3",
        '"sqlite:///srv/e.sqlite3"': "sqlite:///srv/e.sqlite3",
        '"postgresql:///enroll?host=/run/pg"': "postgresql:///enroll?host=/run/pg",
    }
    for value, expected in cases.items():
        (tmp_path / "e.toml").write_text(f"{head}database = {value}\n")
        config = load_config(tmp_path / "e.toml")
        assert config.database == expected, value
        assert dbapi.dialect_of(str(config.database)) in ("sqlite", "postgresql")


def test_placeholders_become_psycopg_ones_outside_string_literals() -> None:
    sql = "UPDATE t SET a = ?, b = 'what?' WHERE c LIKE '50%' AND d = ? AND e = 'it''s?'"
    assert dbapi.pg_sql(sql) == (
        "UPDATE t SET a = %s, b = 'what?' WHERE c LIKE '50%%' AND d = %s AND e = 'it''s?'"
    )
    assert dbapi.pg_sql("SELECT 10 % 3 WHERE x = ?") == "SELECT 10 %% 3 WHERE x = %s"
