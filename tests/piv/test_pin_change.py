"""ChangePin and UnblockPin through the real stack (daemon, pcscd, vpcd, virtual card).

Every test inserts its own card through the ``cards`` fixture: the virtual card
keeps a changed PIN or PUK counter only in the memory of its process, and the
fixture removes (ends) it after the test, so the next insertion is the card as
provisioned again.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from piv_support import PIN, PivDaemon, failure, start_piv_daemon

from hwgate.v1 import piv_pb2, piv_pb2_grpc
from hwgate_testbed.paths import PIV_PUK, vpcd_reader
from support.daemon import error_info
from support.logscan import register_secret

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
PUK = PIV_PUK.encode()
NEW_PIN = b"24681357"
WRONG_PINS = (b"654321", b"11112222", b"9999999")
WRONG_PUKS = (b"87654321", b"00000000", b"11223344")
FAILED = grpc.StatusCode.FAILED_PRECONDITION
INVALID = grpc.StatusCode.INVALID_ARGUMENT

for _secret in (NEW_PIN, *WRONG_PUKS, PUK):
    register_secret(_secret)  # the end-of-session secret scan looks for these too


def change(
    hwgated: PivDaemon, session: str, old: bytes, new: bytes, allow_last: bool = False
) -> piv_pb2.ChangePinResponse:
    request = piv_pb2.ChangePinRequest(
        session_id=session, old_pin=old, new_pin=new, allow_last_attempt=allow_last
    )
    return hwgated.piv.ChangePin(request, timeout=10)


def unblock(
    hwgated: PivDaemon, session: str, puk: bytes, new: bytes, allow_last: bool = False
) -> piv_pb2.UnblockPinResponse:
    request = piv_pb2.UnblockPinRequest(
        session_id=session, puk=puk, new_pin=new, allow_last_puk_attempt=allow_last
    )
    return hwgated.piv.UnblockPin(request, timeout=10)


def block_pin(hwgated: PivDaemon, session: str) -> None:
    for wrong in WRONG_PINS:
        failure(lambda w=wrong: hwgated.verify(session, w, allow_last=True))
    assert hwgated.info(session_id=session).pin_retries_left == 0


def outcomes(hwgated: PivDaemon, action: str) -> list[str]:
    return [r["outcome"] for r in hwgated.audit_records() if r["action"] == action]


def test_change_pin_then_only_the_new_pin_verifies(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    assert hwgated.verify(session)
    response = change(hwgated, session, PIN, NEW_PIN)
    assert response.HasField("session_expire_time")
    # The PIN is not verified any more: not in the session, and not on the card
    # (a "PIN once" key must not sign on the strength of the change).
    info = hwgated.info(session_id=session)
    assert not info.pin_verified and info.pin_retries_left == 3
    code, reason, meta = failure(lambda: hwgated.verify(session, PIN))
    assert (code, reason, meta["retries_left"]) == (FAILED, "PIN_INCORRECT", "2")
    assert hwgated.verify(session, NEW_PIN)
    assert hwgated.info(session_id=session).pin_verified
    records = [r for r in hwgated.audit_records() if r["action"] == "piv.change_pin"]
    assert [(r["outcome"], r["reader"]) for r in records] == [("ok", R0)]


def test_change_pin_with_a_wrong_old_pin_counts_down_and_guards_the_last(
    hwgated: PivDaemon, cards: object
) -> None:
    cards.insert(0, "bob")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    for expected_left, wrong in zip((2, 1), WRONG_PINS, strict=False):
        code, reason, meta = failure(lambda w=wrong: change(hwgated, session, w, NEW_PIN))
        assert (code, reason, meta["retries_left"]) == (FAILED, "PIN_INCORRECT", str(expected_left))
    # One retry left: refused without touching the card, even with the right old PIN.
    code, reason, meta = failure(lambda: change(hwgated, session, PIN, NEW_PIN))
    assert (code, reason, meta) == (FAILED, "LAST_PIN_ATTEMPT", {"retries_left": "1"})
    assert hwgated.info(session_id=session).pin_retries_left == 1
    change(hwgated, session, PIN, NEW_PIN, allow_last=True)
    assert hwgated.info(session_id=session).pin_retries_left == 3  # reset by the right PIN
    assert outcomes(hwgated, "piv.change_pin") == [
        "PIN_INCORRECT",
        "PIN_INCORRECT",
        "LAST_PIN_ATTEMPT",
        "ok",
    ]


def test_change_pin_on_a_blocked_pin(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    block_pin(hwgated, session)
    code, reason, meta = failure(lambda: change(hwgated, session, PIN, NEW_PIN, allow_last=True))
    assert (code, reason, meta) == (FAILED, "PIN_BLOCKED", {"retries_left": "0"})


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b"12345", NEW_PIN, "old_pin"),
        (PIN, b"123456789", "new_pin"),
        (PIN, b"12a456", "new_pin"),
        (PIN, b"", "new_pin"),
        (b"12\xff456", NEW_PIN, "old_pin"),
        (PIN, "1234\uff156".encode(), "new_pin"),
    ],
    ids=["old-short", "new-long", "new-letter", "new-empty", "old-ff", "new-unicode-digit"],
)
def test_change_pin_format_errors_send_nothing(
    hwgated: PivDaemon, cards: object, old: bytes, new: bytes, field: str
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    try:
        change(hwgated, session, old, new)
    except grpc.RpcError as err:
        code, reason, meta = error_info(err)
        details = err.details() or ""
    else:
        raise AssertionError("a malformed PIN was accepted")
    assert (code, reason, meta.get("field")) == (INVALID, "PIN_FORMAT", field)
    for secret in (old, new):
        if len(secret) >= 3:
            assert secret.decode("utf-8", "replace") not in details
    assert hwgated.info(session_id=session).pin_retries_left == 3  # nothing reached the card
    assert hwgated.verify(session)  # the PIN is unchanged


def test_unblock_a_blocked_pin_with_the_puk(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    block_pin(hwgated, session)
    code, reason, _ = failure(lambda: hwgated.verify(session, PIN, allow_last=True))
    assert (code, reason) == (FAILED, "PIN_BLOCKED")
    assert unblock(hwgated, session, PUK, NEW_PIN).HasField("session_expire_time")
    info = hwgated.info(session_id=session)
    assert info.pin_retries_left == 3 and not info.pin_verified
    code, reason, _ = failure(lambda: hwgated.verify(session, PIN))
    assert (code, reason) == (FAILED, "PIN_INCORRECT")
    assert hwgated.verify(session, NEW_PIN)
    assert outcomes(hwgated, "piv.unblock_pin") == ["ok"]


def test_wrong_puks_count_down_the_last_is_guarded_then_blocked(
    hwgated: PivDaemon, cards: object
) -> None:
    cards.insert(0, "bob")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    for expected_left, wrong in zip((2, 1), WRONG_PUKS, strict=False):
        code, reason, meta = failure(lambda w=wrong: unblock(hwgated, session, w, NEW_PIN))
        assert (code, reason, meta) == (
            FAILED,
            "PUK_INCORRECT",
            {"retries_left": str(expected_left)},
        )
    # The card said one PUK try is left: not spent unless allowed, not even for the right PUK.
    for puk in (WRONG_PUKS[2], PUK):
        code, reason, meta = failure(lambda p=puk: unblock(hwgated, session, p, NEW_PIN))
        assert (code, reason, meta) == (FAILED, "LAST_PUK_ATTEMPT", {"retries_left": "1"})
    code, reason, meta = failure(
        lambda: unblock(hwgated, session, WRONG_PUKS[2], NEW_PIN, allow_last=True)
    )
    assert (code, reason, meta) == (FAILED, "PUK_BLOCKED", {"retries_left": "0"})
    # Blocked for good: even the right PUK, even allowed.
    code, reason, meta = failure(lambda: unblock(hwgated, session, PUK, NEW_PIN, allow_last=True))
    assert (code, reason, meta) == (FAILED, "PUK_BLOCKED", {"retries_left": "0"})
    assert hwgated.verify(session)  # the PIN itself was never touched
    assert outcomes(hwgated, "piv.unblock_pin") == [
        "PUK_INCORRECT",
        "PUK_INCORRECT",
        "LAST_PUK_ATTEMPT",
        "LAST_PUK_ATTEMPT",
        "PUK_BLOCKED",
        "PUK_BLOCKED",
    ]


def test_the_right_puk_forgets_the_known_puk_count(hwgated: PivDaemon, cards: object) -> None:
    """A right PUK resets the card's PUK counter: the daemon's guard starts over."""
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    for wrong in WRONG_PUKS[:2]:
        failure(lambda w=wrong: unblock(hwgated, session, w, NEW_PIN))
    unblock(hwgated, session, PUK, NEW_PIN, allow_last=True)
    code, reason, meta = failure(lambda: unblock(hwgated, session, WRONG_PUKS[0], PIN))
    assert (code, reason, meta) == (FAILED, "PUK_INCORRECT", {"retries_left": "2"})


@pytest.mark.parametrize(
    ("puk", "new", "field"),
    [(b"1234567", NEW_PIN, "puk"), (b"123456789", NEW_PIN, "puk"), (PUK, b"12345", "new_pin")],
    ids=["puk-short", "puk-long", "new-short"],
)
def test_unblock_format_errors_send_nothing(
    hwgated: PivDaemon, cards: object, puk: bytes, new: bytes, field: str
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    code, reason, meta = failure(lambda: unblock(hwgated, session, puk, new))
    assert (code, reason, meta.get("field")) == (INVALID, "PIN_FORMAT", field)
    # Nothing reached the card: three wrong PUKs later the PUK is blocked, not before.
    for expected_left, wrong in zip((2, 1), WRONG_PUKS, strict=False):
        _, _, meta = failure(lambda w=wrong: unblock(hwgated, session, w, NEW_PIN))
        assert meta["retries_left"] == str(expected_left)


def test_another_identity_cannot_use_the_session(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    admin_socket = hwgated.audit_file.parent / "admin.sock"
    with grpc.insecure_channel(f"unix://{admin_socket}") as channel:
        other = piv_pb2_grpc.PivServiceStub(channel)
        for call in (
            lambda: other.ChangePin(
                piv_pb2.ChangePinRequest(session_id=session, old_pin=PIN, new_pin=NEW_PIN),
                timeout=10,
            ),
            lambda: other.UnblockPin(
                piv_pb2.UnblockPinRequest(session_id=session, puk=PUK, new_pin=NEW_PIN),
                timeout=10,
            ),
        ):
            code, reason, _ = failure(call)
            assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SESSION_NOT_OWNED")
    assert hwgated.verify(session)  # the PIN is unchanged


def test_pin_change_and_unblock_share_the_pin_try_limit(
    testbed: object, cards: object, tmp_path: Path
) -> None:
    daemon = start_piv_daemon(tmp_path, verify_pin_per_minute=2)
    try:
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        session = daemon.open_session(R0)
        failure(lambda: change(daemon, session, WRONG_PINS[0], NEW_PIN))
        failure(lambda: unblock(daemon, session, WRONG_PUKS[0], NEW_PIN))
        for call in (
            lambda: change(daemon, session, PIN, NEW_PIN),
            lambda: unblock(daemon, session, PUK, NEW_PIN),
            lambda: daemon.verify(session),
        ):
            code, reason, _ = failure(call)
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    finally:
        daemon.stop()


def test_no_pin_or_puk_in_the_debug_log_or_the_audit(
    testbed: object, cards: object, tmp_path: Path
) -> None:
    # trace, the lowest level: every APDU is logged (the secrets' data redacted)
    daemon = start_piv_daemon(tmp_path, log_level="trace")
    try:
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        session = daemon.open_session(R0)
        change(daemon, session, PIN, NEW_PIN)
        failure(lambda: change(daemon, session, WRONG_PINS[0], PIN))
        failure(lambda: change(daemon, session, NEW_PIN, b"12x456"))
        failure(lambda: unblock(daemon, session, WRONG_PUKS[0], PIN))
        failure(lambda: unblock(daemon, session, b"1234567", PIN))
        unblock(daemon, session, PUK, PIN)
        assert daemon.verify(session)
    finally:
        daemon.stop()
    log = daemon.daemon.log.read_bytes()
    audit = daemon.audit_file.read_bytes()
    assert b"piv.change_pin" in audit and b"piv.unblock_pin" in audit
    assert b"00 24 00 80 Lc=16 data=<redacted>" in log  # CHANGE REFERENCE DATA, traced
    assert b"00 2C 00 80 Lc=16 data=<redacted>" in log  # RESET RETRY COUNTER, traced
    for secret in (PIN, NEW_PIN, WRONG_PINS[0], b"12x456", WRONG_PUKS[0], PUK):
        for form in (secret, secret.hex().encode()):
            assert form not in log, f"{secret!r} in the daemon log"
            assert form not in audit, f"{secret!r} in the audit log"


def test_both_need_a_session(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    for session, expected in (
        ("", (INVALID, "INVALID_ARGUMENT")),
        ("no-such-session", (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")),
    ):
        code, reason, _ = failure(lambda s=session: change(hwgated, s, PIN, NEW_PIN))
        assert (code, reason) == expected
        code, reason, _ = failure(lambda s=session: unblock(hwgated, s, PUK, NEW_PIN))
        assert (code, reason) == expected
    assert hwgated.info(reader=R0).pin_retries_left == 3
