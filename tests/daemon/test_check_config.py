"""``hwgated --check-config``: validate a config and exit, without starting anything.

For an upgrade (check the file with the new version before the restart) and for
the docs' configs (tests/docs/test_docs.py runs it on every one of them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwgated.main import EXIT_CONFIG, main

GOOD = """
[[listen]]
unix = "{dir}/hwgate.sock"
role = "kiosk"
[policy.roles.kiosk]
allow = ["hwgate.v1.CardService/*"]
"""


def test_a_good_config_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hwgated.toml"
    config.write_text(GOOD.format(dir=tmp_path))
    assert main(["--config", str(config), "--check-config"]) == 0
    assert capsys.readouterr().out == f"{config}: OK\n"
    assert not (tmp_path / "hwgate.sock").exists(), "nothing was started"


def test_a_bad_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hwgated.toml"
    config.write_text(GOOD.format(dir=tmp_path) + "[pcsc]\nreaderz = []\n")
    assert main(["--config", str(config), "--check-config"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert str(config) in err and "readerz" in err
