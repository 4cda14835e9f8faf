"""Collect a WatchEvents stream in a background thread; wait for events with deadlines."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import grpc

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed.timing import scaled

Event = card_pb2.WatchEventsResponse


def type_name(event: Event) -> str:
    return card_pb2.EventType.Name(event.type).removeprefix("EVENT_TYPE_")


class EventCollector:
    """Reads one WatchEvents stream into a queue; ``error`` holds how it ended."""

    def __init__(
        self,
        channel: grpc.Channel,
        request: card_pb2.WatchEventsRequest | None = None,
    ) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self.error: grpc.RpcError | None = None
        self.done = threading.Event()
        stub = card_pb2_grpc.CardServiceStub(channel)
        self._call = stub.WatchEvents(request or card_pb2.WatchEventsRequest())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._call:
                self.events.put(event)
        except grpc.RpcError as err:
            self.error = err
        finally:
            self.done.set()

    def next(self, timeout: float = 10.0) -> Event:
        """The next event; *timeout* (like every wait here) is scaled for load."""
        event = self.events.get(timeout=scaled(timeout))
        self.seen.append(event)
        return event

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        """The first event matching *predicate*; earlier ones are kept in ``seen``."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching event within {scaled(timeout)}s; "
                    f"seen {[type_name(e) for e in self.seen]}"
                )
            try:
                event = self.events.get(timeout=remaining)
                self.seen.append(event)
            except queue.Empty:
                continue
            if predicate(event):
                return event

    def snapshot(self, timeout: float = 10.0) -> list[Event]:
        """The events up to and including SNAPSHOT_COMPLETE."""
        events = []
        while True:
            event = self.next(timeout)
            events.append(event)
            if type_name(event) == "SNAPSHOT_COMPLETE":
                return events

    def cancel(self) -> None:
        self._call.cancel()
        self.done.wait(5)


def is_event(kind: str, reader: str | None = None) -> Callable[[Event], bool]:
    return lambda e: type_name(e) == kind and (reader is None or e.reader == reader)
