"""WatchEvents responses serialized once per event, for every subscriber.

One card insertion reaches every subscriber: the response is built and
serialized once and each stream writes the same bytes (WatchEvents sends bytes
as they are: ``edge.preencoded``). The cache is keyed by the event object's
identity, which costs a dict lookup; hashing the frozen event (its card identity
included) once per subscriber cost more than that. It holds the last *size*
events, so an id is never reused while its entry lives.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hwgated.api import convert
from hwgated.pcsc.events import CardEvent


def encode(event: CardEvent[Any]) -> bytes:
    """*event* as WatchEventsResponse bytes (uncached: snapshots are per subscriber)."""
    return convert.event(event).SerializeToString()  # type: ignore[no-any-return]


class EncodedEvents:
    """The serialized form of recent live events, shared by every subscriber."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._cache: dict[int, tuple[CardEvent[Any], bytes]] = {}
        self._order: deque[int] = deque()

    def __call__(self, event: CardEvent[Any]) -> bytes:
        hit = self._cache.get(id(event))
        if hit is not None and hit[0] is event:
            return hit[1]
        data = encode(event)
        self._cache[id(event)] = (event, data)
        self._order.append(id(event))
        if len(self._order) > self._size:
            self._cache.pop(self._order.popleft(), None)
        return data
