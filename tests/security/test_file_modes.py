"""Issue 14, finding 10: files the daemon trusts, with modes that let others in.

A world-readable pin_file (or TLS key), a config (policy) file anyone can
rewrite, and an existing socket directory anyone can replace the socket in are
refused with exit status 2 and a message naming the file; looser but plausible
modes are warnings. See hwgated.filemodes for the rules.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hwgated.config import ConfigError, load_config
from hwgated.filemodes import UnsafeFile, check_socket_dir, check_socket_mode
from support.daemon import TEST_POLICY, start_daemon, write_config

EXIT_CONFIG = 2


def make_config(tmp_path: Path, *, pin_mode: int = 0o600, key_mode: int = 0o600) -> Path:
    """A config with a PIN file, a TLS listener and a unix socket, all in *tmp_path*."""
    for name in ("server.pem", "ca.pem"):
        (tmp_path / name).write_text("stand-in")
    for name, mode in (("server.key", key_mode), ("user.pin", pin_mode)):
        (tmp_path / name).write_text("stand-in\n")
        (tmp_path / name).chmod(mode)
    config = tmp_path / "hwgated.toml"
    config.write_text(
        f'[[listen]]\nunix = "{tmp_path / "hwgate.sock"}"\nrole = "kiosk"\n'
        '[[listen]]\ntcp = "127.0.0.1:7443"\ntls_cert = "server.pem"\ntls_key = "server.key"\n'
        'client_ca = "ca.pem"\n'
        '[[hsm.token]]\nname = "t"\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\n'
        'token_label = "x"\npin_file = "user.pin"\n' + TEST_POLICY
    )
    config.chmod(0o644)
    return config


@pytest.mark.parametrize(
    "mode", [0o644, 0o604, 0o602, 0o601, 0o620, 0o666], ids=lambda m: f"{m:04o}"
)
def test_exposed_pin_file_is_refused(tmp_path: Path, mode: int) -> None:
    config = make_config(tmp_path, pin_mode=mode)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    message = str(refused.value)
    assert str(tmp_path / "user.pin") in message
    assert f"{mode:04o}" in message and "too open" in message


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o440], ids=lambda m: f"{m:04o}")
def test_private_pin_file_is_accepted(tmp_path: Path, mode: int) -> None:
    assert load_config(make_config(tmp_path, pin_mode=mode)).tokens[0].pin_file


def test_world_readable_tls_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls_key .*server\.key.*too open"):
        load_config(make_config(tmp_path, key_mode=0o644))


@pytest.mark.parametrize("mode", [0o666, 0o646, 0o642], ids=lambda m: f"{m:04o}")
def test_world_writable_config_is_refused(tmp_path: Path, mode: int) -> None:
    config = make_config(tmp_path)
    config.chmod(mode)
    with pytest.raises(ConfigError, match=rf"{config}.*{mode:04o}.*too open"):
        load_config(config)


def test_group_writable_config_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path)
    config.chmod(0o664)
    with caplog.at_level(logging.WARNING, logger="hwgated.filemodes"):
        load_config(config)
    assert any("group-writable" in r.getMessage() for r in caplog.records)


def test_config_in_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    config = make_config(directory)
    directory.chmod(0o777)
    try:
        with pytest.raises(ConfigError, match="world-writable"):
            load_config(config)
        directory.chmod(0o777 | stat.S_ISVTX)  # sticky, like /tmp: nobody can replace it
        assert load_config(config)
    finally:
        directory.chmod(0o700)


AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only root can chown to another user")
NOBODY = 65534


@AS_ROOT
def test_files_owned_by_another_user(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path)
    os.chown(tmp_path / "user.pin", NOBODY, -1)
    with pytest.raises(ConfigError, match=f"pin_file .*user.pin is owned by uid {NOBODY}"):
        load_config(config)
    os.chown(tmp_path / "user.pin", 0, -1)
    os.chown(config, NOBODY, -1)
    with caplog.at_level(logging.WARNING, logger="hwgated.filemodes"):
        load_config(config)  # a config owned by someone else: a warning only
    assert any(f"owned by uid {NOBODY}" in r.getMessage() for r in caplog.records)
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    os.chown(run, NOBODY, -1)
    with pytest.raises(UnsafeFile, match=f"owned by uid {NOBODY}"):
        check_socket_dir(run)


def test_hwgated_exits_2_naming_the_exposed_pin_file(tmp_path: Path) -> None:
    config = make_config(tmp_path, pin_mode=0o644)
    result = subprocess.run(
        [sys.executable, "-m", "hwgated", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_CONFIG
    assert str(tmp_path / "user.pin") in result.stderr
    assert "too open" in result.stderr


def test_socket_directory_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o750)
    check_socket_dir(directory)  # the daemon's own 0750 directory
    directory.chmod(0o777)
    with pytest.raises(UnsafeFile, match=f"{directory} is world-writable"):
        check_socket_dir(directory)
    with caplog.at_level(logging.WARNING, logger="hwgated.filemodes"):
        directory.chmod(0o777 | stat.S_ISVTX)
        check_socket_dir(directory)
        directory.chmod(0o770)
        check_socket_dir(directory)
    messages = [r.getMessage() for r in caplog.records]
    assert any("world-writable (sticky" in m for m in messages)
    assert any("group-writable" in m for m in messages)
    directory.chmod(0o700)


def test_socket_wider_than_configured_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        os.chmod(path, 0o666)
        with pytest.raises(UnsafeFile, match="mode 0666, wider than the configured 0660"):
            check_socket_mode(path, 0o660, "kiosk")
        os.chmod(path, 0o600)
        check_socket_mode(path, 0o660, "kiosk")  # narrower is fine
        with caplog.at_level(logging.WARNING, logger="hwgated.filemodes"):
            os.chmod(path, 0o666)
            check_socket_mode(path, 0o666, "kiosk")
        assert any("every local user" in r.getMessage() for r in caplog.records)


@pytest.mark.testbed
def test_hwgated_refuses_a_world_writable_socket_directory(testbed: object, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o777)
    config = tmp_path / "hwgated.toml"
    config.write_text(
        f'[daemon]\ngrace_period = 1\n[[listen]]\nunix = "{run / "hwgate.sock"}"\n'
        'role = "kiosk"\n' + TEST_POLICY
    )
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hwgated", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        run.chmod(0o700)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert f"socket directory {run} is world-writable" in result.stderr
    assert not (run / "hwgate.sock").exists()


@pytest.mark.testbed
def test_bound_sockets_have_exactly_the_configured_modes(testbed: object, tmp_path: Path) -> None:
    config, kiosk, admin = write_config(tmp_path)
    daemon = start_daemon(config, kiosk, tmp_path / "hwgated.log")
    try:
        assert stat.S_IMODE(kiosk.stat().st_mode) == 0o660
        assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    finally:
        daemon.stop(signal.SIGTERM)


@pytest.mark.testbed
def test_the_test_beds_files_pass_without_a_warning(
    testbed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """What hwgate-testbed writes (config, PIN, TLS key, socket directory) is trusted as is."""
    paths = testbed.paths
    with caplog.at_level(logging.WARNING, logger="hwgated.filemodes"):
        config = load_config(paths.daemon_config)
        for listener in config.listeners:
            if listener.unix is not None:
                check_socket_dir(listener.unix.parent)
    assert [r.getMessage() for r in caplog.records] == []
    assert config.tokens[0].pin_file == str(paths.user_pin)
