"""Key descriptions remembered for authorization, each trusted for a limited time.

Callers authorize a key use by the label of the key a reference resolves to
(an id or URI names no label), so every use needs the key's description. The
pool remembers descriptions to save a worker round trip per call, and drops
them all when it creates or destroys objects itself. A key relabelled or
deleted by another PKCS#11 application is invisible to that; the TTL bounds how
long such a change can go unnoticed: after it, the key is described again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.types import KeyInfo

MAX_ENTRIES = 1024  # distinct (reference, classes) pairs remembered

CacheKey = tuple[KeyRef, tuple[KeyClass, ...]]


class DescribeCache:
    """``(reference, classes) -> KeyInfo``, an entry valid for ``ttl`` seconds after it
    was stored; a ttl of 0 stores nothing. ``clock`` is injectable for tests."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[CacheKey, tuple[float, KeyInfo]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> KeyInfo | None:
        """The remembered description, or None when absent or expired (then dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, info = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return info

    def put(self, key: CacheKey, info: KeyInfo) -> None:
        """Remember ``info``; a full cache is emptied first (references are few in
        practice, so the bound only stops a caller inventing references from growing it)."""
        if self.ttl <= 0:
            return
        if key not in self._entries and len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (self._clock() + self.ttl, info)

    def clear(self) -> None:
        """Forget everything (this pool created or destroyed objects)."""
        self._entries.clear()
