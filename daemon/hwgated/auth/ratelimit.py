"""Per-identity token buckets: how often one caller may do something costly or risky.

VerifyPin is the case in point: every wrong PIN burns one of the card's few
retries, and a kiosk client that loops on VerifyPin would block the card of
whoever stands in front of it. A token bucket allows a short burst (a user
mistyping twice) but caps the sustained rate at ``per_minute``.

The limiter is used from the asyncio loop, but a lock keeps it correct from
threads too. Buckets that have refilled completely are dropped, so memory
stays bounded by the identities active within the last minute.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hwgated.errors import RateLimited

Clock = Callable[[], float]
_PRUNE_EVERY = 256  # acquisitions between sweeps of idle buckets


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBucketLimiter:
    """``per_minute`` actions per key and minute, bursting up to ``burst`` (default: the same).

    ``per_minute <= 0`` disables the limit (the config's way to say "unlimited").
    """

    def __init__(
        self, per_minute: int, *, burst: int | None = None, clock: Clock = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.capacity = float(burst if burst is not None else per_minute)
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._since_prune = 0

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, key: str, action: str = "this call") -> None:
        """Take one token for *key*; raise RateLimited (retry_after_seconds) when none is left."""
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            bucket = self._refill(key, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                self._maybe_prune(now)
                return
            wait = (1.0 - bucket.tokens) / self._rate
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(
            f"too many {action} calls; retry in {retry_after}s",
            retry_after_seconds=retry_after,
        )

    def acquire_all(self, keys: tuple[str, ...], action: str = "this call") -> None:
        """Take one token from each of *keys*, or none at all.

        Used where one act is limited on several axes at once (a PIN try counts
        against the caller and against the card): a refusal on one axis must not
        spend a token on another.
        """
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            buckets = [self._refill(key, now) for key in dict.fromkeys(keys)]
            short = [b for b in buckets if b.tokens < 1.0]
            if not short:
                for bucket in buckets:
                    bucket.tokens -= 1.0
                self._maybe_prune(now)
                return
            wait = max((1.0 - b.tokens) / self._rate for b in short)
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(
            f"too many {action} calls; retry in {retry_after}s",
            retry_after_seconds=retry_after,
        )

    def _refill(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
            return bucket
        elapsed = max(0.0, now - bucket.stamp)
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self._rate)
        bucket.stamp = now
        return bucket

    def _maybe_prune(self, now: float) -> None:
        """Forget buckets that would be full by now: they carry no information."""
        self._since_prune += 1
        if self._since_prune < _PRUNE_EVERY:
            return
        self._since_prune = 0
        full_after = self.capacity / self._rate
        idle = [k for k, b in self._buckets.items() if now - b.stamp >= full_after]
        for key in idle:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
