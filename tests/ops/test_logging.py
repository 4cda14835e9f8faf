"""journald logging: structured fields, the audit identifier, and the choice of target."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from hwgated.logsetup import journal_fields

CHILD = r"""
import json, logging, sys
from hwgated.logsetup import setup_logging
from hwgated.auth.audit import AuditLog
sent = []
def sender(msg, **fields):
    sent.append({"MESSAGE": msg, **fields})
target = setup_logging("info", sys.argv[1], sender=sender)
logging.getLogger("hwgated.pcsc").warning(
    "card pulled", extra={"hwgate_reader": "Virtual PCD 00 00", "hwgate_reason": "CARD_REMOVED"})
AuditLog().record("hsm.sign", "POLICY_DENIED", key="issuing-ca")
print(json.dumps({"target": target, "sent": sent}))
"""


def _run(target: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, target],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_journal_records_carry_structured_fields() -> None:
    result = _run("journal")
    assert result["target"] == "journal"
    sent = result["sent"]
    assert isinstance(sent, list) and len(sent) == 2
    plain, audit = sent
    assert plain["MESSAGE"] == "card pulled"
    assert plain["HWGATE_READER"] == "Virtual PCD 00 00"
    assert plain["HWGATE_REASON"] == "CARD_REMOVED"
    assert plain["SYSLOG_IDENTIFIER"] == "hwgated"
    assert plain["PRIORITY"] == "4"
    assert all(key == key.upper() for key in plain), "journald takes upper-case fields only"
    assert audit["SYSLOG_IDENTIFIER"] == "hwgated-audit"
    assert audit["HWGATE_KEY"] == "issuing-ca"
    assert audit["HWGATE_REASON"] == "POLICY_DENIED"
    assert audit["HWGATE_ACTION"] == "hsm.sign"


def test_auto_uses_stderr_unless_it_is_the_journal_stream() -> None:
    assert _run("auto", {"JOURNAL_STREAM": "1:2"})["target"] == "stderr"
    assert _run("stderr")["target"] == "stderr"


def test_journal_fields_of_a_plain_record_without_extras() -> None:
    record = logging.LogRecord("hwgated", logging.INFO, __file__, 1, "hello", None, None)
    assert journal_fields(record) == {}
    record.hwgate_peer = "spiffe://hwgate.test/enrollment"
    record.hwgate_key = "issuing-ca"
    assert journal_fields(record) == {
        "HWGATE_PEER": "spiffe://hwgate.test/enrollment",
        "HWGATE_KEY": "issuing-ca",
    }
