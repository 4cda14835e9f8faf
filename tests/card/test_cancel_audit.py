"""A call its client cancels is audited as "CANCELLED", like every service does.

Before one ``audited`` helper served every service, CardService recorded a
cancelled call as "CancelledError" (the Python class name), HsmService as
"INTERNAL_ERROR" and PivService not at all.
"""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import pytest

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed.paths import vpcd_reader
from support.daemon import DaemonProc, ready

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)


def _audit(daemon: DaemonProc) -> list[dict[str, Any]]:
    return [
        json.loads(line[line.index("{") :])
        for line in daemon.log.read_text().splitlines()
        if "hwgated.audit" in line and "{" in line
    ]


def _wait_for_record(daemon: DaemonProc, action: str, role: str, deadline: float) -> dict[str, Any]:
    """The first audit record of *action* by *role*, waiting on the daemon's log."""
    while time.monotonic() < deadline:
        for record in _audit(daemon):
            if record["action"] == action and record["role"] == role:
                return record
        time.sleep(0.05)  # polling the daemon's own view, bounded by the deadline
    raise AssertionError(f"no {action} record by {role}: {_audit(daemon)}")


def test_a_cancelled_open_session_is_audited_as_cancelled(
    hwgated: DaemonProc, cards: object
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    kiosk = card_pb2_grpc.CardServiceStub(hwgated.channel())
    admin_channel = grpc.insecure_channel(f"unix:{hwgated.socket.parent / 'admin.sock'}")
    ready(admin_channel)
    admin = card_pb2_grpc.CardServiceStub(admin_channel)
    held = kiosk.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10)
    try:
        # The admin's OpenSession queues behind the kiosk's session...
        waiter = admin.OpenSession.future(card_pb2.OpenSessionRequest(reader=R0), timeout=30)
        # ...and a later call on the same connection answered means the daemon has it.
        assert admin.ListReaders(card_pb2.ListReadersRequest(), timeout=10).readers
        assert not waiter.done()
        waiter.cancel()
        record = _wait_for_record(hwgated, "card.session_open", "admin", time.monotonic() + 10)
        assert record["outcome"] == "CANCELLED" and record["reader"] == R0
    finally:
        kiosk.CloseSession(card_pb2.CloseSessionRequest(session_id=held.session_id), timeout=10)
        admin_channel.close()
    # The reader is free again: the cancelled waiter left the queue.
    again = kiosk.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10)
    kiosk.CloseSession(card_pb2.CloseSessionRequest(session_id=again.session_id), timeout=10)
