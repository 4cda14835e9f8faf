"""Card pulled mid-batch, a subscriber that stops reading."""

from __future__ import annotations

import concurrent.futures
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed.paths import vpcd_reader
from support.daemon import DaemonProc, error_info, start_daemon, write_config
from support.events import EventCollector, is_event
from support.fanout import Subscribers

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")
BIG_BATCH = 60000
FANOUT = 200
PIN_STATUS = bytes.fromhex("00200080")  # empty VERIFY: changes nothing, answers 63Cx


@pytest.fixture
def big_batch_daemon(testbed: object, tmp_path: Path) -> Iterator[DaemonProc]:
    config, kiosk, _ = write_config(
        tmp_path, pcsc=f"max_apdus_per_transmit = {BIG_BATCH}\nsubscriber_queue = 4"
    )
    daemon = start_daemon(config, kiosk, tmp_path / "hwgated.log")
    yield daemon
    daemon.stop(signal.SIGKILL)


def admin_stub(daemon: DaemonProc) -> card_pb2_grpc.CardServiceStub:
    channel = grpc.insecure_channel(f"unix:{daemon.socket.parent / 'admin.sock'}")
    return card_pb2_grpc.CardServiceStub(channel)


def test_card_pulled_during_a_long_batch_aborts_it_and_the_queued_job(
    big_batch_daemon: DaemonProc, cards: object
) -> None:
    watcher = EventCollector(big_batch_daemon.channel())
    watcher.snapshot()
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    watcher.wait_for(is_event("CARD_INSERTED", R0))  # the daemon knows the card: the jobs are its
    watcher.cancel()
    stub = admin_stub(big_batch_daemon)
    batch = card_pb2.TransmitRequest(reader=R0, apdus=[PIN_STATUS] * BIG_BATCH)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(stub.Transmit, batch, timeout=60)
        queued = pool.submit(stub.Transmit, batch, timeout=60)
        cards.remove(0)  # type: ignore[attr-defined]
        outcomes = []
        for call in (running, queued):
            with pytest.raises(grpc.RpcError) as err:
                call.result(timeout=60)
            outcomes.append(error_info(err.value)[:2])
    # The batch that ran is aborted. The other one was either queued behind it for
    # this card (CARD_REMOVED too) or, on a loaded machine, reached the daemon only
    # after the removal (CARD_NOT_PRESENT); it never runs against the empty reader.
    removed = (grpc.StatusCode.ABORTED, "CARD_REMOVED")
    late = (grpc.StatusCode.FAILED_PRECONDITION, "CARD_NOT_PRESENT")
    assert removed in outcomes, outcomes
    assert set(outcomes) <= {removed, late}, outcomes


def test_slow_subscriber_is_cut_off_while_200_others_get_every_event_in_order(
    big_batch_daemon: DaemonProc, cards: object
) -> None:
    # A tiny HTTP/2 window makes the slow client's stream back up after a few events.
    slow_channel = grpc.insecure_channel(
        big_batch_daemon.target,
        options=[("grpc.http2.lookahead_bytes", 256), ("grpc.http2.bdp_probe", 0)],
    )
    slow_call = card_pb2_grpc.CardServiceStub(slow_channel).WatchEvents(
        card_pb2.WatchEventsRequest()
    )
    received = []
    for event in slow_call:  # subscribed: read the snapshot, then stop reading
        received.append(event)
        if event.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE:
            break
    # 200 subscribers (over 4 connections: the stream cap is 100 a connection) that read.
    fast = Subscribers(big_batch_daemon.target, FANOUT, card_pb2.WatchEventsRequest())
    cycles = 12
    try:
        for k in range(1, cycles + 1):
            cards.insert(0, "alice")  # type: ignore[attr-defined]
            fast.wait_for_total(card_pb2.EVENT_TYPE_CARD_INSERTED, FANOUT * k)
            cards.remove(0)  # type: ignore[attr-defined]
            fast.wait_for_total(card_pb2.EVENT_TYPE_CARD_REMOVED, FANOUT * k)
    finally:
        fast.close()
    # Every fast subscriber got every event, in order, the same as every other one,
    # while the slow one was backed up.
    first = [(e.sequence, e.type) for e in fast.live[0]]
    inserted, removed = card_pb2.EVENT_TYPE_CARD_INSERTED, card_pb2.EVENT_TYPE_CARD_REMOVED
    assert [t for _, t in first if t in (inserted, removed)] == [inserted, removed] * cycles
    assert [s for s, _ in first] == sorted({s for s, _ in first})  # increasing, no repeat
    assert all([(e.sequence, e.type) for e in live] == first for live in fast.live)
    assert fast.errors == [None] * FANOUT
    # The slow one, once it reads, finds what was buffered and then RESOURCE_EXHAUSTED
    # with where to resume.
    with pytest.raises(grpc.RpcError) as err:
        for event in slow_call:
            received.append(event)
    code, reason, metadata = error_info(err.value)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SUBSCRIBER_TOO_SLOW")
    assert int(metadata["last_sequence"]) == received[-1].sequence
    live = [e for e in received if not e.snapshot]
    assert len(live) < 2 * cycles
    assert [(e.sequence, e.type) for e in live] == first[: len(live)]  # a gap-free prefix
    slow_channel.close()
