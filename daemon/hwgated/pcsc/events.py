"""Card events: a sequence-numbered journal and bounded per-subscriber queues.

Everything here runs on the asyncio loop, so publishing and subscribing are
atomic with respect to each other: a subscriber's snapshot or replay and its
live queue meet with no gap and no duplicate. A subscriber that falls behind
overflows its own queue and is cut off; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from hwgated.errors import SubscriberTooSlow
from hwgated.patterns import Glob

# Who the card is, as the daemon's injected ``identify`` says; opaque to this layer.
IdentityT = TypeVar("IdentityT")


class EventType(enum.Enum):
    READER_STATE = "READER_STATE"
    SNAPSHOT_COMPLETE = "SNAPSHOT_COMPLETE"
    READER_ADDED = "READER_ADDED"
    READER_REMOVED = "READER_REMOVED"
    CARD_INSERTED = "CARD_INSERTED"
    CARD_REMOVED = "CARD_REMOVED"
    SERVICE_DOWN = "SERVICE_DOWN"
    SERVICE_UP = "SERVICE_UP"


class ReaderState(enum.Enum):
    EMPTY = "EMPTY"
    PRESENT = "PRESENT"
    MUTE = "MUTE"
    UNAVAILABLE = "UNAVAILABLE"


# Per-filter memory of reader names (a host has a handful; hotplug may add more).
MAX_REMEMBERED_READERS = 64
SNAPSHOT_TYPES = frozenset({EventType.READER_STATE, EventType.SNAPSHOT_COMPLETE})
SERVICE_TYPES = frozenset({EventType.SERVICE_DOWN, EventType.SERVICE_UP})


@dataclass(frozen=True)
class CardEvent(Generic[IdentityT]):
    sequence: int
    time: float
    type: EventType
    reader: str = ""
    state: ReaderState | None = None
    atr: bytes = b""
    card: IdentityT | None = None
    snapshot: bool = False
    resync: bool = False


def _any_reader(reader: str) -> bool:
    return True


@dataclass(frozen=True)
class EventFilter:
    reader_patterns: tuple[Glob, ...] = ()  # compiled and bounded by patterns.caller_globs
    types: frozenset[EventType] = frozenset()
    # The policy's per-reader rule: events of readers the caller may not use are hidden.
    reader_allowed: Callable[[str], bool] = _any_reader
    # Each reader name's answer from reader_patterns (fixed for the filter's life):
    # every event is offered to every subscriber, so this runs per event x subscriber.
    _pattern_answers: dict[str, bool] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def accepts(self, event: CardEvent[Any]) -> bool:
        if event.type in SNAPSHOT_TYPES:
            return event.type is EventType.SNAPSHOT_COMPLETE or self._reader_ok(event.reader)
        if self.types and event.type not in self.types:
            return False
        return event.type in SERVICE_TYPES or self._reader_ok(event.reader)

    def _reader_ok(self, reader: str) -> bool:
        if not self.reader_allowed(reader):
            return False
        if not self.reader_patterns:
            return True
        answer = self._pattern_answers.get(reader)
        if answer is None:
            answer = any(p.match(reader) for p in self.reader_patterns)
            if len(self._pattern_answers) < MAX_REMEMBERED_READERS:
                self._pattern_answers[reader] = answer
        return answer


class Subscription(Generic[IdentityT]):
    """One WatchEvents stream's live queue."""

    def __init__(self, hub: EventHub[IdentityT], event_filter: EventFilter, size: int) -> None:
        self._hub = hub
        self._filter = event_filter
        self._queue: asyncio.Queue[CardEvent[IdentityT]] = asyncio.Queue(maxsize=size)
        self.overflowed = False
        self.last_sequence = 0

    def offer(self, event: CardEvent[IdentityT]) -> None:
        if self.overflowed or not self._filter.accepts(event):
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # what is queued is still delivered, then the stream ends

    async def get(self) -> CardEvent[IdentityT]:
        """The next event; SubscriberTooSlow once the queue overflowed and drained."""
        if self.overflowed and self._queue.empty():
            raise SubscriberTooSlow(
                "the subscriber fell behind; resume with after_sequence",
                last_sequence=self.last_sequence,
            )
        event = await self._queue.get()
        self.last_sequence = event.sequence
        return event

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub(Generic[IdentityT]):
    """Assigns sequence numbers, keeps the journal, fans events out."""

    def __init__(self, journal_size: int = 1024, queue_size: int = 256) -> None:
        # Sequence numbers start at the start time in microseconds, so a daemon restart
        # never reuses numbers a client may resume from: old numbers fall before the
        # journal and get a resync snapshot instead of someone else's events.
        self.sequence = int(time.time() * 1_000_000)
        self._journal: deque[CardEvent[IdentityT]] = deque(maxlen=journal_size)
        self._queue_size = queue_size
        self._subscribers: set[Subscription[IdentityT]] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def queue_depths(self) -> list[int]:
        """Events waiting in each subscriber's queue (metrics)."""
        return [s.depth for s in self._subscribers]

    def publish(self, event_type: EventType, **fields: object) -> CardEvent[IdentityT]:
        self.sequence += 1
        event: CardEvent[IdentityT] = CardEvent(self.sequence, time.time(), event_type, **fields)  # type: ignore[arg-type]
        self._journal.append(event)
        for subscriber in list(self._subscribers):
            subscriber.offer(event)
        return event

    def subscribe(
        self,
        after_sequence: int,
        event_filter: EventFilter,
        snapshot: Callable[[], Iterable[CardEvent[IdentityT]]],
    ) -> tuple[list[CardEvent[IdentityT]], Subscription[IdentityT]]:
        """The events to send first (snapshot or replay) and the live subscription."""
        subscription = Subscription(self, event_filter, self._queue_size)
        initial = self._initial(after_sequence, snapshot)
        subscription.last_sequence = initial[-1].sequence if initial else after_sequence
        self._subscribers.add(subscription)
        return [e for e in initial if event_filter.accepts(e)], subscription

    def unsubscribe(self, subscription: Subscription[IdentityT]) -> None:
        self._subscribers.discard(subscription)

    def _initial(
        self, after: int, snapshot: Callable[[], Iterable[CardEvent[IdentityT]]]
    ) -> list[CardEvent[IdentityT]]:
        if after == 0:
            return self._snapshot(snapshot, resync=False)
        oldest = self._journal[0].sequence if self._journal else self.sequence + 1
        if after > self.sequence or after < oldest - 1:
            return self._snapshot(snapshot, resync=True)
        return [e for e in self._journal if e.sequence > after]

    def _snapshot(
        self, snapshot: Callable[[], Iterable[CardEvent[IdentityT]]], resync: bool
    ) -> list[CardEvent[IdentityT]]:
        now = time.time()
        events = [
            replace(e, sequence=self.sequence, time=now, snapshot=True, resync=resync)
            for e in snapshot()
        ]
        events.append(
            CardEvent(self.sequence, now, EventType.SNAPSHOT_COMPLETE, snapshot=True, resync=resync)
        )
        return events
