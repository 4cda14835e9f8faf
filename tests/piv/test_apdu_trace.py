"""The APDU trace (log_level = "trace") through the real stack: one line per
exchange, and no PIN or PUK in any log, whatever carried it (VerifyPin,
ChangePin, UnblockPin, a raw VERIFY)."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from piv_support import PIN, PivDaemon, failure

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2
from hwgate_testbed.paths import PIV_PUK, vpcd_reader
from support import logscan
from support.daemon import start_daemon, write_config

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
WRONG_PIN = b"654321"
NEW_PIN = b"11112222"
PUK = PIV_PUK.encode()
WRONG_PUK = b"87654321"
RAW_VERIFY = bytes.fromhex("0020008008") + PIN + b"\xff\xff"
LINE = re.compile(
    r"hwgated\.pcsc\.trace: (?P<reader>.+?): (?P<header>(?:[0-9A-F]{2} ){3}[0-9A-F]{2})"
    r"(?P<rest>.*) -> (?P<len>\d+) bytes SW=(?P<sw>[0-9A-F]{4}) \((?P<ms>\d+\.\d) ms\)$"
)


@pytest.fixture
def tracing(testbed: object, tmp_path: Path) -> Iterator[PivDaemon]:
    audit = tmp_path / "audit.jsonl"
    config, kiosk, _admin = write_config(
        tmp_path,
        log_level="trace",
        extra=f'[audit]\nfile = "{audit}"\n[policy]\ntransmit_security = ["admin"]\n',
    )
    daemon = PivDaemon(start_daemon(config, kiosk, tmp_path / "hwgated.log"), audit)
    yield daemon
    daemon.channel.close()
    daemon.daemon.stop(signal.SIGKILL)


def _admin(daemon: PivDaemon) -> card_pb2_grpc.CardServiceStub:
    channel = grpc.insecure_channel(f"unix:{daemon.daemon.socket.parent / 'admin.sock'}")
    return card_pb2_grpc.CardServiceStub(channel)


def test_trace_logs_every_exchange_and_never_a_pin(tracing: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = tracing.open_session(R0)
    code, reason, _ = failure(lambda: tracing.verify(session, WRONG_PIN))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PIN_INCORRECT")
    assert tracing.verify(session, PIN)
    # PIN change and unblock carry PINs and a PUK in CHANGE REFERENCE DATA / RESET
    # RETRY COUNTER: wrong PUK first, then the right one.
    tracing.piv.ChangePin(
        piv_pb2.ChangePinRequest(session_id=session, old_pin=PIN, new_pin=NEW_PIN), timeout=10
    )
    wrong_puk = piv_pb2.UnblockPinRequest(session_id=session, puk=WRONG_PUK, new_pin=PIN)
    code, reason, _ = failure(lambda: tracing.piv.UnblockPin(wrong_puk, timeout=10))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PUK_INCORRECT")
    tracing.piv.UnblockPin(
        piv_pb2.UnblockPinRequest(session_id=session, puk=PUK, new_pin=PIN), timeout=10
    )
    tracing.close_session(session)
    reply = _admin(tracing).Transmit(
        card_pb2.TransmitRequest(reader=R0, apdus=[RAW_VERIFY]), timeout=20
    )
    assert reply.responses[0].status_word == 0x9000

    log = tracing.daemon.log.read_text()
    lines = [m for line in log.splitlines() if (m := LINE.search(line))]
    assert all(m["reader"] == R0 for m in lines)
    verifies = [m for m in lines if m["header"].startswith("00 20 00 80")]
    with_pin = [m for m in verifies if "Lc=8" in m["rest"]]
    # VerifyPin wrong, VerifyPin right, the raw VERIFY: each a redacted line.
    assert [m["sw"] for m in with_pin] == ["63C2", "9000", "9000"]
    assert all(m["rest"].strip() == "Lc=8 data=<redacted>" for m in with_pin)
    assert all(m["len"] == "0" for m in verifies)
    changes = [m for m in lines if m["header"].startswith("00 24 00 80")]
    unblocks = [m for m in lines if m["header"].startswith("00 2C 00 80")]
    assert [m["sw"] for m in changes] == ["9000"]
    assert [m["sw"][:3] for m in unblocks] == ["63C", "900"]
    assert all(m["rest"].strip() == "Lc=16 data=<redacted>" for m in changes + unblocks)
    selects = [m for m in lines if m["header"] == "00 A4 04 00"]
    assert selects and all("data=A0000003080000100001" in m["rest"] for m in selects)
    get_data = [m for m in lines if m["header"] == "00 CB 3F FF" and m["sw"] == "9000"]
    assert get_data and all(int(m["len"]) > 0 for m in get_data)  # lengths, never the data
    assert "card reset" in log  # the session's end resets the card, traced too

    files = [tracing.daemon.log, tracing.audit_file]
    secrets = [PIN, WRONG_PIN, NEW_PIN, PUK, WRONG_PUK, PIN + b"\xff\xff", PIN + PUK]
    assert logscan.scan_files(files, secrets) == []
