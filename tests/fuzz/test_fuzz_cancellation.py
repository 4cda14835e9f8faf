"""The cancellation harness (tests/support/cancellation.py), long form.

``make fuzz`` runs many rounds (HWGATE_CANCEL_ROUNDS, default 200) against one
daemon; the short form in tests/card/test_cancellation.py is part of
``make test``. Replay with HWGATE_CANCEL_SEED.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import FULL

from support.cancellation import harness_daemon, run_harness
from support.daemon import DaemonProc

pytestmark = [pytest.mark.testbed, pytest.mark.fuzz, pytest.mark.slow]


@pytest.fixture
def daemon(testbed: object, tmp_path: Path) -> Iterator[DaemonProc]:
    proc = harness_daemon(tmp_path)
    yield proc
    proc.stop(signal.SIGKILL)


@pytest.mark.skipif(not FULL, reason="long form: make fuzz (the short form runs in make test)")
def test_cancellation_harness_long(daemon: DaemonProc, cards: object) -> None:
    run_harness(daemon, cards, rounds=int(os.environ.get("HWGATE_CANCEL_ROUNDS", "200")))
