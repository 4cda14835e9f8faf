"""Hypothesis settings for the fuzz targets, by profile and by target weight.

Each target declares a weight (its share of the budget). Under the ``fuzz``
profile a weight of 1 is 4,000 examples; the targets' weights add up to
26, so one ``make fuzz`` runs about 104,000 cases. The CI profile
runs 1/40 of that, which keeps tests/fuzz under a minute on a shared core.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FULL = PROFILE == "fuzz"
UNIT = 4000 if FULL else 100

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fuzz_settings(weight: float = 1.0, *, deadline_ms: int | None = None) -> settings:
    """Settings for one target; examples scale with the profile, no per-example deadline."""
    return settings(
        max_examples=max(10, int(UNIT * weight)),
        deadline=deadline_ms,
        suppress_health_check=_QUIET,
        derandomize=not FULL,  # CI: the same cases every run; fuzz: new ones
        database=None,
        print_blob=True,
    )
