"""The local listener's file-system protection: mode, group, directory, what is at the path.

tests/daemon/test_listeners.py already covers a stale socket being replaced and
a live one refusing a second daemon; these add what a local attacker would try.
"""

from __future__ import annotations

import grp
import os
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.daemon import TEST_POLICY, start_daemon

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="groupadd/chown need root")


def config(directory: Path, listeners: str) -> Path:
    path = directory / "hwgated.toml"
    path.write_text(f"[daemon]\ngrace_period = 1\n{listeners}\n{TEST_POLICY}")
    return path


def listener(sock: Path, role: str = "kiosk", extra: str = "") -> str:
    return f'[[listen]]\nunix = "{sock}"\nrole = "{role}"\n{extra}\n'


def run_refused(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hwgated", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_default_and_admin_modes(testbed: Any, tmp_path: Path) -> None:
    kiosk, admin = tmp_path / "kiosk.sock", tmp_path / "admin.sock"
    cfg = config(tmp_path, listener(kiosk) + listener(admin, "admin", 'mode = "0600"'))
    daemon = start_daemon(cfg, kiosk, tmp_path / "hwgated.log")
    try:
        assert stat.S_ISSOCK(kiosk.stat().st_mode)
        assert stat.S_IMODE(kiosk.stat().st_mode) == 0o660
        assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    finally:
        assert daemon.stop() == 0
    assert not kiosk.exists() and not admin.exists()


def test_missing_socket_directory_is_made_0750(testbed: Any, tmp_path: Path) -> None:
    sock = tmp_path / "run" / "hwgate.sock"
    daemon = start_daemon(config(tmp_path, listener(sock)), sock, tmp_path / "hwgated.log")
    try:
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o750
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    finally:
        daemon.stop()


@pytest.fixture
def test_group() -> Iterator[str]:
    """A throwaway group (root only), removed afterwards."""
    name = f"hwgsec{uuid.uuid4().hex[:8]}"
    subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@needs_root
def test_configured_group_is_applied(testbed: Any, tmp_path: Path, test_group: str) -> None:
    sock = tmp_path / "hwgate.sock"
    cfg = config(tmp_path, listener(sock, extra=f'group = "{test_group}"'))
    daemon = start_daemon(cfg, sock, tmp_path / "hwgated.log")
    try:
        assert sock.stat().st_gid == grp.getgrnam(test_group).gr_gid
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    finally:
        daemon.stop()


def test_regular_file_at_the_socket_path_is_never_replaced(tmp_path: Path) -> None:
    sock = tmp_path / "hwgate.sock"
    sock.write_text("someone's data")
    result = run_refused(config(tmp_path, listener(sock)))
    assert result.returncode == 2
    assert "is not a socket" in result.stderr
    assert sock.read_text() == "someone's data"


def test_symlink_to_a_file_at_the_socket_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    sock = tmp_path / "hwgate.sock"
    sock.symlink_to(target)
    result = run_refused(config(tmp_path, listener(sock)))
    assert result.returncode == 2
    assert target.read_text() == "keep me" and sock.is_symlink()


def test_stale_socket_replaced_with_configured_mode(testbed: Any, tmp_path: Path) -> None:
    import socket

    sock = tmp_path / "hwgate.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(sock))
    os.chmod(sock, 0o777)  # the leftover was world-writable; the new one must not be
    cfg = config(tmp_path, listener(sock, "admin", 'mode = "0600"'))
    daemon = start_daemon(cfg, sock, tmp_path / "hwgated.log")
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    finally:
        daemon.stop(signal.SIGTERM)


def test_refused_second_daemon_leaves_the_live_socket(testbed: Any, tmp_path: Path) -> None:
    """A daemon that fails to start must not unlink the running daemon's socket."""
    sock = tmp_path / "hwgate.sock"
    first = start_daemon(config(tmp_path, listener(sock)), sock, tmp_path / "hwgated.log")
    try:
        inode = sock.stat().st_ino
        second = tmp_path / "second"
        second.mkdir()
        result = run_refused(config(second, listener(sock)))
        assert result.returncode == 2
        assert sock.exists() and sock.stat().st_ino == inode
        first.channel().close()  # new clients still reach the first daemon
    finally:
        assert first.stop() == 0
