"""Socket files: a stale one is replaced, a live one refuses a second daemon."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from support.daemon import TEST_POLICY, DaemonProc, start_daemon


def config_for(tmp_path: Path, sock: Path) -> Path:
    config = tmp_path / "hwgated.toml"
    config.write_text(
        f'[daemon]\ngrace_period = 1\n[[listen]]\nunix = "{sock}"\nrole = "kiosk"\n' + TEST_POLICY
    )
    return config


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    sock = tmp_path / "hwgate.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # bound but never listening: nobody answers
    stale.close()
    assert sock.exists()
    daemon = start_daemon(config_for(tmp_path, sock), sock, tmp_path / "log")
    assert daemon.stop() == 0


def test_live_socket_refuses_second_daemon(bare_daemon: DaemonProc, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    config = config_for(second, bare_daemon.socket)
    result = subprocess.run(
        [sys.executable, "-m", "hwgated", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "in use by a running process" in result.stderr
    # The first daemon is untouched.
    assert bare_daemon.proc.poll() is None
    assert bare_daemon.stop(signal.SIGTERM) == 0


def test_config_error_exits_2_with_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[[listen]]\nunix = 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "hwgated", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "listen[0].unix: expected a string, got an integer" in result.stderr
