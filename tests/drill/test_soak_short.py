"""A ten-second soak (tests/support/soak.py, the code behind bench/soak.py): mixed
clients in separate processes, cards pulled and re-inserted, then the soak's own
checks (no unexpected errors, every signature verifies, gap-free subscribers, flat
RSS, no leaked threads/sessions)."""

from __future__ import annotations

from typing import Any

import pytest

from support import soak

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


def test_short_soak_passes_every_check(testbed: Any) -> None:
    result = soak.run_soak(10.0, clients=15, processes=3, paths=testbed.paths)
    soak.print_result(result)
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert not failed, (failed, result["unexpected_errors"], result["subscriber_gaps"])
