"""PIN tries are limited per card, not only per caller: more identities buy no more guesses."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2, piv_pb2_grpc
from hwgate_testbed.paths import vpcd_reader
from support.daemon import DaemonProc, error_info, start_daemon

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
PIN = b"123456"  # the right PIN: the test spends budget, never the card's retries
PER_MINUTE = 3
SOCKETS = ("a.sock", "b.sock", "c.sock")  # three listeners: three identities

POLICY = """
[policy.roles.kiosk]
allow = ["hwgate.v1.CardService/*", "hwgate.v1.PivService/*"]
[[policy.readers]]
pattern = "*"
roles = ["kiosk"]
"""


@pytest.fixture
def three_doors(testbed: Any, tmp_path: Path) -> Iterator[tuple[DaemonProc, Path]]:
    listeners = "".join(f'[[listen]]\nunix = "{tmp_path / s}"\nrole = "kiosk"\n' for s in SOCKETS)
    config = tmp_path / "hwgated.toml"
    config.write_text(
        f"[daemon]\ngrace_period = 1\n{listeners}"
        f"[limits]\nverify_pin_per_minute = {PER_MINUTE}\n{POLICY}"
    )
    proc = start_daemon(config, tmp_path / SOCKETS[0], tmp_path / "hwgated.log")
    yield proc, tmp_path
    proc.stop(signal.SIGKILL)


def verify_once(socket: Path) -> str:
    """Open a session, VerifyPin, close: "ok" or the refusal's reason."""
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        card = card_pb2_grpc.CardServiceStub(channel)
        session = card.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10).session_id
        try:
            request = piv_pb2.VerifyPinRequest(session_id=session, pin=PIN)
            piv_pb2_grpc.PivServiceStub(channel).VerifyPin(request, timeout=10)
            return "ok"
        except grpc.RpcError as err:
            return error_info(err)[1]
        finally:
            card.CloseSession(card_pb2.CloseSessionRequest(session_id=session), timeout=10)


def test_identities_together_stay_within_the_cards_budget(
    three_doors: tuple[DaemonProc, Path], cards: Any
) -> None:
    _, directory = three_doors
    cards.insert(0, "alice")
    outcomes = [verify_once(directory / s) for _ in range(PER_MINUTE) for s in SOCKETS]
    assert outcomes.count("ok") == PER_MINUTE  # per identity alone this would be 9
    assert set(outcomes) == {"ok", "RATE_LIMITED"}
