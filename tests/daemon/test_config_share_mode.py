"""``[pcsc] share_mode``: exclusive by default, "shared" on request, anything else a
config error that names the key and the choices (issue #18 item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwgated.config import ConfigError, load_config
from hwgated.ops.reload import restart_only_changes
from hwgated.pcsc.config import ShareMode


def _config(tmp_path: Path, pcsc: str = "") -> Path:
    path = tmp_path / "hwgated.toml"
    path.write_text(f'[[listen]]\nunix = "{tmp_path}/s.sock"\nrole = "kiosk"\n[pcsc]\n{pcsc}')
    return path


def test_exclusive_is_the_default(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path)).pcsc.share_mode is ShareMode.EXCLUSIVE


@pytest.mark.parametrize(("value", "mode"), [("exclusive", ShareMode.EXCLUSIVE),
                                             ("shared", ShareMode.SHARED)])  # fmt: skip
def test_both_modes_load(tmp_path: Path, value: str, mode: ShareMode) -> None:
    config = load_config(_config(tmp_path, f'share_mode = "{value}"\n'))
    assert config.pcsc.share_mode is mode


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"Shared"', 'pcsc.share_mode: must be one of "exclusive", "shared", got \'Shared\''),
        ('"direct"', 'pcsc.share_mode: must be one of "exclusive", "shared", got \'direct\''),
        ('""', "pcsc.share_mode: must be one of"),
        ("true", "pcsc.share_mode: expected a string, got a boolean"),
        ("2", "pcsc.share_mode: expected a string, got an integer"),
    ],
)
def test_a_bad_share_mode_names_the_key(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, f"share_mode = {value}\n"))
    assert message in str(err.value)
    assert str(tmp_path / "hwgated.toml") in str(err.value)


def test_changing_it_needs_a_restart(tmp_path: Path) -> None:
    old = load_config(_config(tmp_path))
    new = load_config(_config(tmp_path, 'share_mode = "shared"\n'))
    assert restart_only_changes(old, new) == ["[pcsc]"]
