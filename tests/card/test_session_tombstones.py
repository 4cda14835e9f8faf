"""Ended sessions keep their reason for a while (issue #18 item 4), real stack.

A call on the caller's own ended session answers why it ended: CARD_REMOVED
(ABORTED) after the card or reader left, SESSION_EXPIRED (NOT_FOUND) after the
TTL, SESSION_NOT_FOUND after a close. CloseSession of an ended session stays
NOT_FOUND (cleanup code relies on it) and names the end in metadata `ended`.
Another identity always gets SESSION_NOT_FOUND, as for an id never issued: it
learns nothing of the session.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2, piv_pb2_grpc
from hwgate_testbed.paths import vpcd_reader
from support.daemon import DaemonProc, error_info, ready
from support.events import EventCollector, is_event

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")
Outcome = tuple[grpc.StatusCode, str]
NOT_FOUND = (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


def _channels(daemon: DaemonProc) -> tuple[grpc.Channel, grpc.Channel]:
    admin = grpc.insecure_channel(f"unix:{daemon.socket.parent / 'admin.sock'}")
    ready(admin)
    return daemon.channel(), admin


def _calls(channel: grpc.Channel, session_id: str) -> dict[str, Outcome]:
    """(code, reason) of each session call kind on *session_id*; each must fail.
    CloseSession's ``ended`` metadata is appended to its reason (``reason/ended``)."""
    card = card_pb2_grpc.CardServiceStub(channel)
    piv = piv_pb2_grpc.PivServiceStub(channel)
    calls = {
        "Transmit": lambda: card.Transmit(
            card_pb2.TransmitRequest(session_id=session_id, apdus=[SELECT_PIV]), timeout=5
        ),
        "GetCardInfo": lambda: piv.GetCardInfo(
            piv_pb2.GetCardInfoRequest(session_id=session_id), timeout=5
        ),
        "CloseSession": lambda: card.CloseSession(
            card_pb2.CloseSessionRequest(session_id=session_id), timeout=5
        ),
    }
    out: dict[str, Outcome] = {}
    for name, call in calls.items():
        with pytest.raises(grpc.RpcError) as err:
            call()
        code, reason, metadata = error_info(err.value)
        if "ended" in metadata:
            reason += "/" + metadata["ended"]
        out[name] = (code, reason)
    return out


def _all(outcome: Outcome, closed: Outcome | None = None) -> dict[str, Outcome]:
    """*outcome* for the data calls, *closed* (default NOT_FOUND) for CloseSession."""
    return {"Transmit": outcome, "GetCardInfo": outcome, "CloseSession": closed or NOT_FOUND}


def test_session_ended_by_card_removal_answers_card_removed(
    hwgated: DaemonProc, cards: object
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    kiosk, admin = _channels(hwgated)
    watcher = EventCollector(kiosk)
    watcher.snapshot()
    session = card_pb2_grpc.CardServiceStub(kiosk).OpenSession(
        card_pb2.OpenSessionRequest(reader=R0), timeout=5
    )
    cards.remove(0)  # type: ignore[attr-defined]
    watcher.wait_for(is_event("CARD_REMOVED", R0))
    watcher.cancel()
    assert _calls(admin, session.session_id) == _all(NOT_FOUND)  # a stranger learns nothing
    assert _calls(kiosk, session.session_id) == _all(
        (grpc.StatusCode.ABORTED, "CARD_REMOVED"),
        (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND/card_removed"),
    )
    # Same answer again: the tombstone is not consumed by a call (not even CloseSession).
    assert _calls(kiosk, session.session_id)["Transmit"] == (
        grpc.StatusCode.ABORTED,
        "CARD_REMOVED",
    )


def test_session_ended_by_expiry_answers_session_expired(
    hwgated: DaemonProc, cards: object
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    kiosk, admin = _channels(hwgated)
    ttl = duration_pb2.Duration(nanos=300_000_000)
    session = card_pb2_grpc.CardServiceStub(kiosk).OpenSession(
        card_pb2.OpenSessionRequest(reader=R0, ttl=ttl), timeout=5
    )
    # The admin's job waits for the reader: it runs once the session has expired.
    card_pb2_grpc.CardServiceStub(admin).Transmit(
        card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV]), timeout=20
    )
    assert _calls(admin, session.session_id) == _all(NOT_FOUND)
    assert _calls(kiosk, session.session_id) == _all(
        (grpc.StatusCode.NOT_FOUND, "SESSION_EXPIRED"),
        (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND/expired"),
    )


def test_closed_session_answers_session_not_found(hwgated: DaemonProc, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    kiosk, admin = _channels(hwgated)
    stub = card_pb2_grpc.CardServiceStub(kiosk)
    session = stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=5)
    stub.CloseSession(card_pb2.CloseSessionRequest(session_id=session.session_id), timeout=5)
    assert _calls(kiosk, session.session_id) == _all(NOT_FOUND)
    assert _calls(admin, session.session_id) == _all(NOT_FOUND)
    assert _calls(kiosk, "never-issued") == _all(NOT_FOUND)
