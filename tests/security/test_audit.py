"""The audit log: robust in-process, and who-did-what for card sessions end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from security_support import SecurityDaemon

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed.paths import vpcd_reader
from hwgated.auth.audit import MAX_VALUE_CHARS, AuditLog
from hwgated.auth.identity import Caller

KIOSK = Caller(role="kiosk", subject="local:/run/hwgate/hwgate.sock", listener="/run/x.sock")


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("field", ["pin", "puk", "secret", "value", "key_material", "password"])
def test_forbidden_fields_are_refused(tmp_path: Path, field: str) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(ValueError, match=field):
        log.record("piv.verify_pin", caller=KIOSK, **{field: "123456"})
    assert (tmp_path / "audit.jsonl").read_text() == ""


def test_file_is_private_and_records_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.jsonl"
    log = AuditLog(path)
    log.record("card.open_session", caller=KIOSK, reader="R 00", ttl=30, held=False, gone=None)
    assert path.stat().st_mode & 0o777 == 0o600
    (entry,) = lines(path)
    assert entry["role"] == "kiosk" and entry["subject"] == KIOSK.subject
    assert entry["ttl"] == 30 and entry["held"] is False and "gone" not in entry


def test_long_values_are_truncated(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    entry = log.record("hsm.sign", caller=KIOSK, key="k" * 10_000, note=b"\x00" * 5000)
    assert len(entry["key"]) == MAX_VALUE_CHARS and entry["key"].endswith("…")
    assert len(entry["note"]) <= MAX_VALUE_CHARS
    written = (tmp_path / "audit.jsonl").read_text()
    assert len(written) < 2 * MAX_VALUE_CHARS + 400


def test_control_characters_cannot_forge_a_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    forged = 'x"}\n{"action": "hsm.sign", "outcome": "ok", "role": "admin'
    log.record("card.transmit", caller=KIOSK, reader=forged)
    (entry,) = lines(tmp_path / "audit.jsonl")  # still exactly one record
    assert entry["reader"] == forged


def test_io_errors_never_reach_the_caller_and_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = AuditLog(Path("/dev/full"))  # every write fails with ENOSPC
    with caplog.at_level(logging.INFO, logger="hwgated.audit"):
        for _ in range(3):
            entry = log.record("hsm.sign", caller=KIOSK, key="issuing-ca")
            assert entry["key"] == "issuing-ca"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "unwritable" in errors[0].getMessage()
    # The records were not lost: they went to the hwgated.audit logger.
    fallback = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(fallback) == 3 and '"key": "issuing-ca"' in fallback[0].getMessage()


def test_recovery_after_an_outage_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dir" / "audit.jsonl"
    log = AuditLog(path)
    path.unlink()
    path.parent.rmdir()
    path.parent.write_text("not a directory")  # writes now fail with NotADirectoryError
    with caplog.at_level(logging.WARNING, logger="hwgated.audit"):
        log.record("a", caller=KIOSK)
        path.parent.unlink()
        path.parent.mkdir()
        log.record("b", caller=KIOSK)
    assert [e["action"] for e in lines(path)] == ["b"]
    assert any("writable again" in r.getMessage() for r in caplog.records)


def test_card_sessions_are_audited_with_the_identity(secd: SecurityDaemon, cards: Any) -> None:
    cards.insert(0, "alice")
    reader = vpcd_reader(0)
    with secd.tls_channel("kiosk") as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        opened = stub.OpenSession(card_pb2.OpenSessionRequest(reader=reader), timeout=10)
        stub.CloseSession(card_pb2.CloseSessionRequest(session_id=opened.session_id), timeout=10)
    records = {r["action"]: r for r in secd.audit_records() if r["action"].startswith("card.")}
    for action in ("card.session_open", "card.session_close"):
        record = records[action]
        assert record["outcome"] == "ok"
        assert record["role"] == "kiosk"
        assert record["subject"] == "spiffe://hwgate.test/kiosk"
        assert record["reader"] == reader
        # The session id is a capability for its owner: never logged whole.
        assert opened.session_id not in json.dumps(record)


def test_a_record_is_one_sorted_json_line_with_a_millisecond_utc_time(tmp_path: Path) -> None:
    """The written text is exactly json.dumps(entry, sort_keys=True) plus a newline, and
    consecutive records carry the current UTC time (the formatted second is reused)."""
    import calendar
    import re
    import time as _time

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    before = _time.time()
    entries = [log.record("hsm.sign", caller=KIOSK, key="k…", n=i) for i in range(3)]
    after = _time.time()
    expected = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    assert path.read_text() == expected
    for entry in entries:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
        stamp = calendar.timegm(_time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert int(before) - 1 <= stamp <= after
