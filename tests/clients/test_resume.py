"""watch_events resumes across a daemon restart: a resync snapshot, no duplicates, no loss."""

from __future__ import annotations

import queue
import signal
import threading
from pathlib import Path

import pytest
from clients_support import start_gateway

import hwgate
from hwgate.v1 import card_pb2
from hwgate_testbed.paths import vpcd_reader
from support.daemon import start_daemon

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)
Event = card_pb2.WatchEventsResponse


def kind(event: Event) -> str:
    return card_pb2.EventType.Name(event.type).removeprefix("EVENT_TYPE_")


class Reader:
    """Drains an EventStream in a thread so the test can wait with deadlines."""

    def __init__(self, stream: hwgate.EventStream) -> None:
        self.stream, self.events = stream, queue.Queue[Event]()
        self.seen: list[Event] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for event in self.stream:
            self.events.put(event)

    def until(self, name: str, timeout: float = 30) -> Event:
        while True:
            event = self.events.get(timeout=timeout)
            self.seen.append(event)
            if kind(event) == name:
                return event


def test_watch_resumes_across_daemon_restart(
    testbed: object, cards: object, tmp_path: Path
) -> None:
    gw = start_gateway(tmp_path, testbed, readers=[R0], hsm=False)
    client = hwgate.connect(gw.admin)
    reader = Reader(client.watch_events([R0]))
    first = reader.until("SNAPSHOT_COMPLETE")
    assert not first.resync
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    inserted = reader.until("CARD_INSERTED")

    assert gw.proc.stop() == 0
    cards.remove(0)  # type: ignore[attr-defined]  # missed while the daemon is down
    restarted = start_daemon(
        tmp_path / "hwgated.toml", tmp_path / "admin.sock", tmp_path / "hwgated2.log"
    )
    try:
        resync = reader.until("SNAPSHOT_COMPLETE")
        state = [e for e in reader.seen if e.snapshot and e.resync and kind(e) == "READER_STATE"]
        assert resync.resync and state and state[-1].state == card_pb2.READER_STATE_EMPTY
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        again = reader.until("CARD_INSERTED")
    finally:
        reader.stream.cancel()
        restarted.stop(signal.SIGKILL)
        client.close()
    assert reader.stream.reconnects >= 1
    live = [e.sequence for e in reader.seen if not e.snapshot]
    assert live == sorted(set(live)), "an event was repeated or reordered"
    assert inserted.sequence < resync.sequence < again.sequence
    assert reader.stream.after_sequence == again.sequence
