"""A hwgated on the real test bed (pcscd + vpcd + virtual PIV cards), per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from piv_support import PivDaemon, start_piv_daemon


@pytest.fixture
def hwgated(testbed: object, tmp_path: Path) -> Iterator[PivDaemon]:
    """hwgated owning the vpcd readers, with a debug log and an audit file in tmp_path."""
    daemon = start_piv_daemon(tmp_path)
    yield daemon
    daemon.stop()
