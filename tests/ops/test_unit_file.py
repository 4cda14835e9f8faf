"""The systemd unit: `systemd-analyze verify` passes and the exposure stays <= 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hwgated.config import parse_config

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _unit_with_venv_binary(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at this venv's hwgated (resolvable here)."""
    hwgated = Path(sys.executable).parent / "hwgated"
    assert hwgated.exists(), f"{hwgated}: install the project into the venv"
    text = (SYSTEMD_DIR / "hwgated.service").read_text()
    assert "\nExecStart=/opt/hwgate/venv/bin/hwgated --config /etc/hwgate/hwgated.toml\n" in text
    text = text.replace("ExecStart=/opt/hwgate/venv/bin/hwgated", f"ExecStart={hwgated}")
    unit = tmp_path / "hwgated.service"
    unit.write_text(text)
    return unit


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    unit = _unit_with_venv_binary(tmp_path)
    result = subprocess.run(
        [str(ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "hwgated.service" not in result.stderr, result.stderr  # no warnings about it


@needs_analyze
def test_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    unit = _unit_with_venv_binary(tmp_path)
    result = subprocess.run(
        [str(ANALYZE), "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_names_what_the_design_requires() -> None:
    text = (SYSTEMD_DIR / "hwgated.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=10",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RuntimeDirectory=hwgate",
        "RuntimeDirectoryMode=0710",
        "User=hwgate",
        "Group=hwgate-clients",
        "LoadCredential=hsm-pin:/etc/hwgate/hsm-pin",
        "Wants=pcscd.socket",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "UMask=0077",
        "MemoryDenyWriteExecute=yes",
        "PrivateDevices=yes",
    ):
        assert f"\n{line}\n" in text, line
    sysusers = (SYSTEMD_DIR / "hwgate.sysusers.conf").read_text()
    assert re.search(r"^u hwgate ", sysusers, re.M)
    assert re.search(r"^g hwgate-clients ", sysusers, re.M)


def test_example_config_follows_the_schema(tmp_path: Path) -> None:
    raw = tomllib.loads((SYSTEMD_DIR / "hwgated.example.toml").read_text())
    # Paths that exist only on a production host: point them at stand-ins.
    tls = tmp_path / "tls.pem"
    tls.write_text("stand-in")
    for listener in raw["listen"]:
        if "unix" in listener:
            listener["unix"] = str(tmp_path / Path(listener["unix"]).name)
            listener.pop("group", None)
        else:
            listener.update(tls_cert=str(tls), tls_key=str(tls), client_ca=str(tls))
    config = parse_config(raw, source="hwgated.example.toml", base=tmp_path)
    assert config.daemon.metrics == "127.0.0.1:9464"
    assert config.tokens[0].pin_credential == "hsm-pin"
    assert config.listeners[0].mode == 0o660
