"""A hwgated on the real test bed (pcscd + vpcd + virtual PIV cards), per test."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemon import DaemonProc, start_daemon, write_config


@pytest.fixture
def hwgated(testbed: object, tmp_path: Path) -> Iterator[DaemonProc]:
    """hwgated owning the vpcd readers; kiosk socket as `socket`, admin next to it."""
    config, kiosk, _admin = write_config(
        tmp_path, pcsc="subscriber_queue = 8\nmax_session_ttl = 5\njournal_size = 16"
    )
    daemon = start_daemon(config, kiosk, tmp_path / "hwgated.log")
    yield daemon
    daemon.stop(signal.SIGKILL)
