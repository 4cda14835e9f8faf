"""Which event loop hwgated runs on ([daemon] event_loop, hwgated.ops.eventloop)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from hwgated.config import ConfigError, load_config
from hwgated.ops import eventloop


def test_auto_picks_uvloop_when_installed_and_explicit_choices_stand() -> None:
    assert eventloop.chosen("auto") == "uvloop"  # a dependency of hwgated
    assert eventloop.chosen("asyncio") == "asyncio"
    assert eventloop.chosen("uvloop") == "uvloop"


@pytest.mark.parametrize("setting", ["auto", "uvloop", "asyncio"])
def test_run_completes_a_coroutine_on_the_chosen_loop(setting: str) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = eventloop.run(which(), setting)
    assert module.startswith("uvloop") == (setting != "asyncio")


def test_an_unknown_event_loop_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "hwgated.toml"
    path.write_text(
        '[daemon]\nevent_loop = "trio"\n'
        f'[[listen]]\nunix = "{tmp_path}/s.sock"\nmode = "0600"\nrole = "admin"\n'
    )
    with pytest.raises(ConfigError, match="event_loop"):
        load_config(path)


def test_an_explicit_uvloop_that_is_not_installed_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvloop is installed here (a dependency): its absence is simulated at the lookup.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    path = tmp_path / "hwgated.toml"
    path.write_text(
        '[daemon]\nevent_loop = "uvloop"\n'
        f'[[listen]]\nunix = "{tmp_path}/s.sock"\nmode = "0600"\nrole = "admin"\n'
    )
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        load_config(path)
    assert eventloop.chosen("auto") == "asyncio"  # auto falls back instead
