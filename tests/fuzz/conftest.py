"""Fuzz targets: the ``fuzz`` marker and the two hypothesis profiles.

``make fuzz`` sets HYPOTHESIS_PROFILE=fuzz (≥100k examples over all targets);
anything else runs the short CI profile. The profiles are applied per test
(fuzz_support.fuzz_settings), never as the global default, so the property
tests elsewhere in the suite keep their own settings.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Until the marker is declared in pyproject.toml (--strict-markers is on).
    config.addinivalue_line("markers", "fuzz: property-based fuzzing of an input parser")


FUZZ_TIMEOUT = 1800  # seconds per target under the long profile (pyproject's 120 s is for CI)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``make fuzz`` a target runs thousands of cases: lift pytest-timeout's limit."""
    from fuzz_support import FULL

    if not FULL:
        return
    for item in items:
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(pytest.mark.timeout(FUZZ_TIMEOUT))
