"""``make kiosk`` / ``make demo`` fail loudly when their own hwgated cannot start.

Before: with ``make run`` up, the stack's hwgated quit ("hwgate.sock is in use by a
running process"), yet the wait for the kiosk socket succeeded against the other
daemon, and the kiosk went on silently using it; a daemon that exited at once cost
the whole 90 s wait and said only "did not come up".
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from hwgate_apps.stack import socket_in_use, start_hwgated
from support.daemon import start_daemon

pytestmark = pytest.mark.testbed


def test_refused_when_another_hwgated_serves_the_bed(testbed: object, tmp_path: Path) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    other = start_daemon(paths.daemon_config, paths.admin_socket, tmp_path / "run.log")
    try:
        assert socket_in_use(paths.kiosk_socket)
        with pytest.raises(RuntimeError, match=r"another hwgated already serves .*hwgate\.sock"):
            start_hwgated(paths, tmp_path / "stack.log")
        assert other.proc.poll() is None  # the running daemon is left alone
    finally:
        other.stop(signal.SIGTERM)
    assert not socket_in_use(paths.kiosk_socket)


def test_a_daemon_that_exits_is_reported_at_once_with_its_reason(
    testbed: object, tmp_path: Path
) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    config = tmp_path / "hwgated.toml"
    config.write_text(paths.daemon_config.read_text() + "\n[nonsense]\nkey = 1\n")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"hwgated exited with status 2: .*nonsense"):
        start_hwgated(paths, tmp_path / "stack.log", config)
    assert time.monotonic() - start < 60  # not the 90 s start-up wait
