"""The tpm2-pkcs11 token's life cycle: up is idempotent, down stops all three processes
(swtpm, the private bus, tpm2-abrmd), and the token with its PIN survives a restart.

Runs in its own directory (not the session's bed), on loopback ports it picked
itself and a D-Bus socket under that directory: another bed is never touched.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hwgate_testbed import procs, tpm2token
from hwgate_testbed.paths import TestbedPaths

NAMES = ("swtpm", "dbus-daemon", "tpm2-abrmd")


def _pids(paths: TestbedPaths) -> dict[str, int | None]:
    layout = tpm2token.Tpm2Layout.of(paths)
    return {n: procs.read_pid(layout.pid_file(n)) for n in NAMES}


def _login_works(token: tpm2token.Tpm2Token) -> bool:
    """A login through the module by another application (opensc's pkcs11-tool)."""
    argv = ["pkcs11-tool", "--module", str(token.module), "--token-label", token.label,
            "--login", "--pin", token.user_pin(), "--list-objects"]  # fmt: skip
    done = subprocess.run(argv, env={**os.environ, **token.env}, capture_output=True, check=False)
    return done.returncode == 0


def test_up_down_up_keeps_the_token(tmp_path: Path) -> None:
    paths = TestbedPaths.at(tmp_path / "bed")
    try:
        token = tpm2token.up(paths)
        first = _pids(paths)
        assert tpm2token.running(paths) and all(first.values())
        assert tpm2token.up(paths) == token and _pids(paths) == first  # nothing restarted
        assert _login_works(token)
        assert tpm2token.down(paths) == ["tpm2-abrmd", "dbus-daemon", "swtpm"]
        assert not tpm2token.running(paths)
        assert all(procs.cmdline(pid) is None for pid in first.values() if pid)
        again = tpm2token.up(paths)
        assert again.user_pin() == token.user_pin() and _login_works(again)
    finally:
        tpm2token.down(paths)


def test_failed_start_leaves_no_process(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """abrmd that cannot reach its TPM exits: up fails and stops what it had started."""
    paths = TestbedPaths.at(tmp_path / "bed")
    started: list[int] = []

    def abrmd_on_a_dead_port(layout: tpm2token.Tpm2Layout, port: int, deadline: float) -> None:
        started.extend(pid for pid in _pids(paths).values() if pid)  # swtpm, dbus-daemon
        real_ensure_abrmd(layout, 1, deadline)  # nothing listens on port 1

    real_ensure_abrmd = tpm2token._ensure_abrmd
    monkeypatch.setattr(tpm2token, "_ensure_abrmd", abrmd_on_a_dead_port)
    try:
        with pytest.raises(tpm2token.Tpm2Error, match="tpm2-abrmd exited"):
            tpm2token.up(paths)
        assert len(started) == 2
        assert [pid for pid in started if procs.cmdline(pid)] == [], "left running"
    finally:
        tpm2token.down(paths)
