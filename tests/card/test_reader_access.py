"""The reader lock on every path: pcscd going away, one-shot jobs and the PIN.

- Callers queued behind a session must fail at once when pcscd goes away, and
  the reader that comes back must be usable at once (the slot's lock used to
  leak: the session's end looked its reader up by name after it was dropped).
- A PIN verified by a one-shot Transmit must not be inherited by the next
  caller's job (the card used to be reset only when a session ended).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed import pcscd
from hwgate_testbed.paths import PIV_PIN
from support.daemon import DaemonProc, error_info, start_daemon, write_config
from support.events import EventCollector, is_event

pytestmark = [pytest.mark.testbed]

R0 = "Virtual PCD 00 00"
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")


@pytest.fixture
def daemon(testbed: object, tmp_path: Path) -> Iterator[DaemonProc]:
    # admin may send security APDUs on Transmit (the test needs a raw VERIFY).
    config, kiosk, _admin = write_config(
        tmp_path, pcsc="max_session_ttl = 60", extra='[policy]\ntransmit_security = ["admin"]'
    )
    proc = start_daemon(config, kiosk, tmp_path / "hwgated.log")
    yield proc
    proc.stop(signal.SIGKILL)


def admin(daemon: DaemonProc) -> card_pb2_grpc.CardServiceStub:
    channel = grpc.insecure_channel(f"unix:{daemon.socket.parent / 'admin.sock'}")
    return card_pb2_grpc.CardServiceStub(channel)


def insert_and_wait(daemon: DaemonProc, cards: object) -> None:
    watcher = EventCollector(daemon.channel())
    try:
        watcher.snapshot()
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        watcher.wait_for(is_event("CARD_INSERTED", R0), timeout=30)
    finally:
        watcher.cancel()


def test_waiters_fail_at_once_when_pcscd_goes_away_and_the_reader_comes_back_free(
    daemon: DaemonProc, testbed: object, cards: object
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    if not pcscd.status(paths).started_here:
        pytest.skip("pcscd is not the test bed's to stop (as root, make test isolates it)")
    insert_and_wait(daemon, cards)
    stub = admin(daemon)
    holder = stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=30)
    assert holder.session_id
    watcher = EventCollector(daemon.channel())
    watcher.snapshot()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # No deadline: before the fix these waited for a lock nobody would release.
        queued_open = pool.submit(stub.OpenSession, card_pb2.OpenSessionRequest(reader=R0))
        queued_apdu = pool.submit(
            stub.Transmit, card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV])
        )
        try:
            assert pcscd.stop_ours(paths, time.monotonic() + 15)
            watcher.wait_for(is_event("SERVICE_DOWN"), timeout=30)
            for call in (queued_open, queued_apdu):
                with pytest.raises(grpc.RpcError) as err:
                    call.result(timeout=30)
                code, reason, _ = error_info(err.value)
                assert (code, reason) in {
                    (grpc.StatusCode.UNAVAILABLE, "PCSC_UNAVAILABLE"),
                    (grpc.StatusCode.NOT_FOUND, "READER_NOT_FOUND"),
                }, err.value.details()
        finally:
            pcscd.ensure_running(paths, time.monotonic() + 30)
    watcher.wait_for(is_event("SERVICE_UP"), timeout=30)
    watcher.cancel()
    cards.remove(0)  # type: ignore[attr-defined]
    insert_and_wait(daemon, cards)
    # The new slot is free at once: a short deadline would fail READER_BUSY otherwise.
    fresh = stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10)
    stub.CloseSession(card_pb2.CloseSessionRequest(session_id=fresh.session_id), timeout=10)


def _ecc_sign_apdu(digest: bytes) -> bytes:
    """GENERAL AUTHENTICATE, key 9A, ECC P-256 (alg 11): sign *digest*."""
    template = bytes([0x82, 0x00, 0x81, len(digest)]) + digest
    data = bytes([0x7C, len(template)]) + template
    return bytes([0x00, 0x87, 0x11, 0x9A, len(data)]) + data


def test_a_pin_verified_in_a_one_shot_job_is_not_inherited_by_the_next_job(
    daemon: DaemonProc, cards: object
) -> None:
    insert_and_wait(daemon, cards)
    stub = admin(daemon)
    pin = PIV_PIN.encode().ljust(8, b"\xff")
    verify = bytes([0x00, 0x20, 0x00, 0x80, len(pin)]) + pin
    first = stub.Transmit(
        card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV, verify]), timeout=30
    )
    assert [r.status_word for r in first.responses] == [0x9000, 0x9000]
    # Another job, no PIN: the 9A key needs one, so the card must refuse.
    digest = hashlib.sha256(b"attacker's challenge").digest()
    second = stub.Transmit(
        card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV, _ecc_sign_apdu(digest)]),
        timeout=30,
    )
    assert second.responses[0].status_word == 0x9000
    assert second.responses[1].status_word == 0x6982, hex(second.responses[1].status_word)
    # A job that only reads leaves the card as it was (no reset is needed for it).
    third = stub.Transmit(card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV]), timeout=30)
    assert third.responses[0].status_word == 0x9000


def test_session_held_is_false_after_close_and_busy_reader_fails_with_reader_busy(
    daemon: DaemonProc, cards: object
) -> None:
    insert_and_wait(daemon, cards)
    stub = admin(daemon)
    held = stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=30)
    with pytest.raises(grpc.RpcError) as err:
        stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=0.5)
    assert err.value.code() in {grpc.StatusCode.DEADLINE_EXCEEDED}
    stub.CloseSession(card_pb2.CloseSessionRequest(session_id=held.session_id), timeout=10)
    readers = stub.ListReaders(card_pb2.ListReadersRequest(), timeout=10).readers
    assert [r.session_held for r in readers if r.name == R0] == [False]
    again = stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10)
    stub.CloseSession(card_pb2.CloseSessionRequest(session_id=again.session_id), timeout=10)
