"""Fixtures: a bare hwgated (no hardware) on a temporary socket."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemon import DaemonProc, start_daemon


@pytest.fixture
def bare_daemon(tmp_path: Path) -> Iterator[DaemonProc]:
    """hwgated with one kiosk Unix socket and no hardware configured."""
    sock = tmp_path / "hwgate.sock"
    config = tmp_path / "hwgated.toml"
    config.write_text(f'[daemon]\ngrace_period = 1\n[[listen]]\nunix = "{sock}"\nrole = "kiosk"\n')
    daemon = start_daemon(config, sock, tmp_path / "hwgated.log")
    yield daemon
    daemon.stop(signal.SIGKILL)
