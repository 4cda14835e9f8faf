"""Fixtures: a bare hwgated (no hardware) on a temporary socket."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemon import TEST_POLICY, DaemonProc, start_daemon


@pytest.fixture
def bare_daemon(testbed: object, tmp_path: Path) -> Iterator[DaemonProc]:
    """hwgated with one kiosk Unix socket and no HSM (the test bed provides pcscd)."""
    sock = tmp_path / "hwgate.sock"
    config = tmp_path / "hwgated.toml"
    config.write_text(
        f'[daemon]\ngrace_period = 1\n[[listen]]\nunix = "{sock}"\nrole = "kiosk"\n' + TEST_POLICY
    )
    daemon = start_daemon(config, sock, tmp_path / "hwgated.log")
    yield daemon
    daemon.stop(signal.SIGKILL)
