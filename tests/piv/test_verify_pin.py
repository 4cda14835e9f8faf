"""VerifyPin through the real stack: right, wrong, blocked, last attempt, format, rate limit."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from piv_support import PIN, PivDaemon, failure, start_piv_daemon

from hwgate.v1 import card_pb2, piv_pb2
from hwgate_testbed.paths import vpcd_reader
from support.daemon import error_info

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
WRONG_PINS = (b"654321", b"11112222", b"9999999")
FAILED = grpc.StatusCode.FAILED_PRECONDITION


def test_right_pin_verifies(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    assert hwgated.verify(session)
    assert hwgated.info(session_id=session).pin_verified
    records = [r for r in hwgated.audit_records() if r["action"] == "piv.verify_pin"]
    assert [(r["outcome"], r["reader"]) for r in records] == [("ok", R0)]


def test_verify_pin_answers_when_the_session_and_pin_end(hwgated: PivDaemon, cards: object) -> None:
    """VerifyPinResponse.session_expire_time: the session's renewed end (one ttl on)."""
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    opened = hwgated.card.OpenSession(
        card_pb2.OpenSessionRequest(reader=R0, ttl=duration_pb2.Duration(seconds=20)), timeout=10
    )
    try:
        before = time.time()
        request = piv_pb2.VerifyPinRequest(session_id=opened.session_id, pin=PIN)
        response = hwgated.piv.VerifyPin(request, timeout=10)
        after = time.time()
        end = response.session_expire_time.ToNanoseconds() / 1e9
        assert before + 20 - 1 <= end <= after + 20 + 1
        # Renewed by the call: not earlier than the end OpenSession announced.
        assert end >= opened.expire_time.ToNanoseconds() / 1e9
    finally:
        hwgated.close_session(opened.session_id)


def test_wrong_pins_count_down_then_the_last_retry_is_guarded(
    hwgated: PivDaemon, cards: object
) -> None:
    cards.insert(0, "bob")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    for expected_left, wrong in zip((2, 1), WRONG_PINS, strict=False):
        code, reason, meta = failure(lambda w=wrong: hwgated.verify(session, w))
        assert (code, reason, meta["retries_left"]) == (FAILED, "PIN_INCORRECT", str(expected_left))
        assert hwgated.info(session_id=session).pin_retries_left == expected_left

    # One retry left: refused without touching the card, even for the right PIN.
    for pin in (WRONG_PINS[2], PIN):
        code, reason, meta = failure(lambda p=pin: hwgated.verify(session, p))
        assert (code, reason, meta) == (FAILED, "LAST_PIN_ATTEMPT", {"retries_left": "1"})
    assert hwgated.info(session_id=session).pin_retries_left == 1

    # allow_last_attempt spends it; the right PIN restores the counter.
    assert hwgated.verify(session, PIN, allow_last=True)
    hwgated.close_session(session)
    assert hwgated.info(reader=R0).pin_retries_left == 3

    outcomes = [r["outcome"] for r in hwgated.audit_records() if r["action"] == "piv.verify_pin"]
    assert outcomes == ["PIN_INCORRECT"] * 2 + ["LAST_PIN_ATTEMPT"] * 2 + ["ok"]


def test_spending_the_last_retry_blocks_the_pin(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    for wrong in WRONG_PINS[:2]:
        failure(lambda w=wrong: hwgated.verify(session, w))
    code, reason, meta = failure(lambda: hwgated.verify(session, WRONG_PINS[2], allow_last=True))
    assert (code, reason, meta.get("retries_left")) == (FAILED, "PIN_BLOCKED", "0")
    code, reason, _ = failure(lambda: hwgated.verify(session, PIN, allow_last=True))
    assert (code, reason) == (FAILED, "PIN_BLOCKED")
    info = hwgated.info(session_id=session)
    assert info.HasField("pin_retries_left") and info.pin_retries_left == 0
    assert not info.pin_verified


@pytest.mark.parametrize(
    "pin",
    [b"", b"12345", b"123456789", b"12a456", b"12345\xff", "1234\uff156".encode(), b" 123456"],
    ids=["empty", "short", "long", "letter", "ff", "unicode-digit", "space"],
)
def test_malformed_pins_are_refused_without_echo(
    hwgated: PivDaemon, cards: object, pin: bytes
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    try:
        hwgated.verify(session, pin)
    except grpc.RpcError as err:
        code, reason, _ = error_info(err)
        details = err.details() or ""
    else:
        raise AssertionError("a malformed PIN was accepted")
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PIN_FORMAT")
    if len(pin) >= 3:
        assert pin.decode("utf-8", "replace") not in details
    assert hwgated.info(session_id=session).pin_retries_left == 3  # nothing reached the card


def test_verify_needs_an_owned_session(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    code, reason, _ = failure(lambda: hwgated.verify("no-such-session"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    code, reason, _ = failure(lambda: hwgated.verify(""))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")


def test_rate_limit_per_identity(testbed: object, cards: object, tmp_path: Path) -> None:
    daemon = start_piv_daemon(tmp_path, verify_pin_per_minute=3)
    try:
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        session = daemon.open_session(R0)
        for _ in range(3):
            assert daemon.verify(session)
        code, reason, meta = failure(lambda: daemon.verify(session))
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert 1 <= int(meta["retry_after_seconds"]) <= 20  # one token per 20 s at 3/min
        outcomes = [r["outcome"] for r in daemon.audit_records() if r["action"] == "piv.verify_pin"]
        assert outcomes == ["ok"] * 3 + ["RATE_LIMITED"]
    finally:
        daemon.stop()


def test_no_pin_in_the_debug_log_or_the_audit(
    testbed: object, cards: object, tmp_path: Path
) -> None:
    # trace, the lowest level: every APDU is logged (VERIFY's data redacted)
    daemon = start_piv_daemon(tmp_path, verify_pin_per_minute=4, log_level="trace")
    try:
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        session = daemon.open_session(R0)
        assert daemon.verify(session)
        for wrong in WRONG_PINS[:2]:
            failure(lambda w=wrong: daemon.verify(session, w))
        failure(lambda: daemon.verify(session, b"12x456"))  # format error
        failure(lambda: daemon.verify(session, WRONG_PINS[2], allow_last=True))  # rate limited
    finally:
        daemon.stop()
    log = daemon.daemon.log.read_bytes()
    audit = daemon.audit_file.read_bytes()
    # both were really written, the log with the APDUs
    assert (
        b"piv.verify_pin" in audit
        and b"TRACE" in log
        and b"00 20 00 80 Lc=8 data=<redacted>" in log
    )
    for secret in (PIN, *WRONG_PINS, b"12x456"):
        assert secret not in log, f"{secret!r} in the daemon log"
        assert secret not in audit, f"{secret!r} in the audit log"
        assert secret.hex().encode() not in log and secret.hex().encode() not in audit
