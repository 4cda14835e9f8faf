"""Shared pytest configuration: the test bed fixtures (`testbed`, `cards`, the bed
guard) and the end-of-session scan of every daemon log and audit file for PINs and
secrets; the suite-wide hypothesis profile; per-test time limits scaled for load.

The suite runs in random order (pytest-randomly; the seed is in the header as
``Using --randomly-seed=N``, replay with ``-p randomly --randomly-seed=N``).
pytest-randomly reseeds ``random`` before each test; hypothesis keeps a private
generator, so its seed is forced to the same number (unless --hypothesis-seed is
given): one seed replays both the order and the property tests' examples.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from hwgate_testbed.timing import scaled, timeout_scale

pytest_plugins = ["hwgate_testbed.pytest_plugin", "support.logscan"]

# Property tests elsewhere in the suite take this as their base (their own
# @settings override max_examples). No per-example deadline and no "too slow"
# health check: on a loaded machine an example may take seconds, which says
# nothing about the parser under test. The fuzz targets set their own profile
# (tests/fuzz/fuzz_support.py).
settings.register_profile(
    "hwgate-suite",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("hwgate-suite")


@pytest.hookimpl(trylast=True)  # after pytest-randomly has picked its seed
def pytest_configure(config: pytest.Config) -> None:
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and getattr(config.option, "hypothesis_seed", None) is None:
        import hypothesis.core

        hypothesis.core.global_force_seed = seed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pytest-timeout's per-test limit (pyproject's, or a test's own marker), scaled
    by HWGATE_TEST_TIMEOUT_SCALE like every deadline inside the tests."""
    if timeout_scale() == 1.0:
        return
    default = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        base = float(marker.args[0]) if marker and marker.args else default
        if base > 0:
            item.add_marker(pytest.mark.timeout(scaled(base)), append=False)  # closest wins
