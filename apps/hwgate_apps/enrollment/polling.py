"""RFC 8628 §3.5 polling discipline, the server's half.

The client must wait ``interval`` seconds between token requests; a request
that comes sooner is answered ``slow_down`` and the interval grows by 5 s "for
this and all subsequent requests". The server keeps the grown interval per
device authorization and judges each poll against the previous one. The first
poll is never too fast (nothing to measure from). A small tolerance absorbs
clock granularity only: a client that waits ``interval`` after reading the
previous answer always arrives at least ``interval`` after the previous request.
"""

from __future__ import annotations

SLOW_DOWN_STEP = 5  # seconds, RFC 8628 §3.5
TOLERANCE = 0.25  # seconds
DEFAULT_INTERVAL = 5  # RFC 8628 §3.2: what a client assumes when none is given


def too_fast(last_poll_at: float | None, now: float, interval: float) -> bool:
    """Whether a poll at *now* breaks the *interval* since the poll at *last_poll_at*."""
    if last_poll_at is None:
        return False
    return now - last_poll_at < interval - TOLERANCE


def slowed(interval: int) -> int:
    """The interval after a ``slow_down``."""
    return interval + SLOW_DOWN_STEP
