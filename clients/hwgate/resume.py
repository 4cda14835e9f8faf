"""Where a WatchEvents stream resumes, shared by the sync and asyncio iterators.

The rules (see CardService.WatchEvents in card.proto):

- a live event's sequence is the resume point;
- a snapshot's events all carry the sequence the snapshot reflects, but the
  resume point moves only at SNAPSHOT_COMPLETE: a snapshot cut off half way is
  sent again in full rather than left incomplete;
- after a daemon restart (or a resume that reached past the daemon's journal)
  the daemon sends a fresh snapshot marked ``resync``. The iterator passes it
  on: those READER_STATE events are the truth, and events missed meanwhile are
  not replayed. Events are never repeated: the iterator drops any live event
  whose sequence it has already passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from hwgate import errors
from hwgate.v1 import card_pb2

# Stream endings that a resume cures: the daemon went away or restarted, the
# connection broke, or this subscriber was too slow and was cut off.
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                             grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED})  # fmt: skip
RESUMABLE_REASONS = frozenset({"SUBSCRIBER_TOO_SLOW", "SHUTTING_DOWN", "PCSC_UNAVAILABLE"})

MIN_BACKOFF, MAX_BACKOFF = 0.05, 5.0


@dataclass
class ResumeState:
    """The resume point and the reconnect backoff of one logical event stream."""

    after_sequence: int = 0
    reader_patterns: list[str] = field(default_factory=list)
    event_types: list[int] = field(default_factory=list)
    backoff: float = 0.0
    _in_snapshot: bool = False
    _last_live: int = 0

    def request(self) -> card_pb2.WatchEventsRequest:
        return card_pb2.WatchEventsRequest(
            after_sequence=self.after_sequence,
            reader_patterns=self.reader_patterns,
            event_types=self.event_types,  # type: ignore[arg-type]
        )

    def accept(self, event: card_pb2.WatchEventsResponse) -> bool:
        """Record *event*; False if it is a duplicate the caller must not see."""
        self.backoff = 0.0
        if event.snapshot:
            self._in_snapshot = event.type != card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE
            if not self._in_snapshot:
                self.after_sequence = event.sequence
                self._last_live = event.sequence
            return True
        if event.sequence <= self._last_live:
            return False
        self._last_live = self.after_sequence = event.sequence
        return True

    def next_backoff(self) -> float:
        """Seconds to wait before the next attempt (0 for the first after a good event)."""
        delay = self.backoff
        self.backoff = min(MAX_BACKOFF, max(MIN_BACKOFF, self.backoff * 2))
        return delay


def resumable(exc: errors.HwgateError) -> bool:
    """Whether a stream that ended with *exc* should be resumed."""
    if exc.reason:
        return exc.reason in RESUMABLE_REASONS or exc.code == grpc.StatusCode.UNAVAILABLE
    return exc.code in RESUMABLE_CODES
