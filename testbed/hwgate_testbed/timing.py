"""Deadlines for the test bed and the suite, stretched on a loaded machine.

Every wait in the suite is for an event with a deadline; the deadline only says
when to give up. On a machine busy with other work (``make test-stress`` runs
``stress-ng`` beside the suite) the same events come later, so the deadlines are
multiplied by ``HWGATE_TEST_TIMEOUT_SCALE`` (default 1). Nothing waits *for* a
deadline, so a generous one costs nothing when things go well.
"""

from __future__ import annotations

import os

SCALE_ENV = "HWGATE_TEST_TIMEOUT_SCALE"


def timeout_scale() -> float:
    """The factor from the environment (read each time: a test may set it)."""
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a number, not {raw!r}") from None
    if scale < 1.0:
        raise ValueError(f"{SCALE_ENV} must be at least 1, not {scale}")
    return scale


def scaled(seconds: float) -> float:
    """*seconds* stretched by the load factor."""
    return seconds * timeout_scale()
