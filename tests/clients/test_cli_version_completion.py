"""``--version`` on every command, and ``hwgate completion SHELL`` (shtab)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
from clients_support import run_cli

from hwgate.cli import main as cli


def _command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _command_paths(child, (*prefix, name))
    return found


COMMANDS = _command_paths(cli.build_parser())


def test_every_command_is_listed() -> None:
    assert ("card", "verify-pin") in COMMANDS and ("key", "pub") in COMMANDS
    assert ("completion",) in COMMANDS and () in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hwgate")
def test_version_on_every_command(command: tuple[str, ...]) -> None:
    """Before: only hwgated had --version; ``hwgate --version`` was a usage error."""
    result = run_cli([*command, "--version"])
    assert result.code == 0, result.err
    assert result.out == f"hwgate {version('hwgate')} (API hwgate.v1)\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_script_is_printed(shell: str) -> None:
    result = run_cli(["completion", shell])
    assert result.code == 0, result.err
    assert "verify-pin" in result.out and "connect-timeout" in result.out


def test_completion_unknown_shell_is_a_usage_error() -> None:
    assert run_cli(["completion", "fish"]).code == 1


def _complete(script: Path, words: list[str]) -> list[str]:
    """What bash would offer after *words* (the last one is being typed)."""
    line = " ".join(words)
    program = (
        f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
        f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; _shtab_hwgate; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30,
                          check=True)  # fmt: skip
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "hwgate.bash"
    result = run_cli(["completion", "bash"])
    script.write_text(result.out)
    assert _complete(script, ["hwgate", "card", "ve"]) == ["verify-pin"]
    assert "readers" in _complete(script, ["hwgate", "re"])
    assert "--pin-stdin" in _complete(script, ["hwgate", "card", "verify-pin", "--pin-s"])
