"""Cancellation safety (issue #25): cancelled calls never lock a reader or leave
a session no one holds. The short form runs in `make test`; `make fuzz` runs the
same harness longer (tests/fuzz/test_fuzz_cancellation.py).

Before the fix this reproduced both bugs: OpenSession calls cancelled while the
card was being identified left the reader locked for good (READER_BUSY until a
restart), and OpenSession calls cancelled after the session was made left it
holding the reader for the whole TTL.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cancellation import harness_daemon, run_harness
from support.daemon import DaemonProc

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture
def daemon(testbed: object, tmp_path: Path) -> Iterator[DaemonProc]:
    proc = harness_daemon(tmp_path)
    yield proc
    proc.stop(signal.SIGKILL)


def test_cancelled_calls_leave_the_reader_usable_and_no_orphan_session(
    daemon: DaemonProc, cards: object
) -> None:
    run_harness(daemon, cards, rounds=int(os.environ.get("HWGATE_CANCEL_ROUNDS", "6")))
