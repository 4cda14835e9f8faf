"""TokenConfig validation and PIN sources; the PIN never shows up in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwgated.hsm import HsmLoginFailed, InvalidArgument, TokenConfig, read_pin


def _config(**kw: object) -> TokenConfig:
    base: dict[str, object] = {"name": "t", "module": "/m.so", "token_label": "L"}
    base.update(kw)
    return TokenConfig(**base)  # type: ignore[arg-type]


def test_pin_file_strips_newline(tmp_path: Path) -> None:
    f = tmp_path / "pin"
    f.write_bytes(b"s3cret\r\n")
    pin = read_pin(_config(pin_file=str(f)))
    assert isinstance(pin, bytearray) and pin == b"s3cret"


def test_pin_env_and_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWGATE_TEST_PIN", "1234")
    assert read_pin(_config(pin_env="HWGATE_TEST_PIN")) == b"1234"
    (tmp_path / "hsm-pin").write_text("5678")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_pin(_config(pin_credential="hsm-pin")) == b"5678"


def test_missing_or_empty_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HsmLoginFailed):
        read_pin(_config(pin_file=str(tmp_path / "absent")))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(HsmLoginFailed):
        read_pin(_config(pin_file=str(tmp_path / "empty")))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(HsmLoginFailed):
        read_pin(_config(pin_credential="x"))


@pytest.mark.parametrize(
    "changes",
    [
        {"pin_file": "a", "pin_env": "B"},
        {},
        {"pin_file": "a", "token_serial": "123"},
        {"pin_file": "a", "workers": 0},
        {"pin_file": "a", "op_timeout": 0},
    ],
)
def test_validate_rejects(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        _config(**changes).validate()
