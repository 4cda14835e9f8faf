"""`hwgate-testbed run`: which hwgated it execs, and that it fails cleanly without
one. (tests/wheels/test_wheels_on_testbed.py runs it end to end from wheels.)"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hwgate_testbed import cli, rundaemon
from hwgate_testbed.paths import TestbedPaths


def _script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_daemon_beside_this_python_wins_over_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = _script(tmp_path / "venv" / "bin" / "hwgated")
    _script(tmp_path / "elsewhere" / "hwgated")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert rundaemon.find_daemon() == str(venv)


def test_without_one_beside_python_the_daemon_comes_from_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = _script(tmp_path / "elsewhere" / "hwgated")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert rundaemon.find_daemon() == str(on_path)


def test_argv_names_the_test_beds_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = _script(tmp_path / "bin" / "hwgated")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    paths = TestbedPaths.at(tmp_path / "bed")
    assert rundaemon.daemon_argv(paths) == [str(daemon), "--config", str(paths.daemon_config)]
    assert rundaemon.daemon_argv(paths, "debug")[-2:] == ["--log-level", "debug"]


def test_run_without_a_daemon_fails_with_one_line_before_touching_the_bed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No hwgated beside python nor on PATH: exit 1, one line naming what to
    install, and no test bed brought up for nothing."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bed = tmp_path / "bed"
    assert cli.main(["run", "--dir", str(bed)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "hwgate-testbed run: hwgated is not installed beside the test bed "
        "(pip install hwgated, or hwgate-testbed[daemon])"
    ]
    assert not bed.exists()


def test_hwgated_takes_only_a_config() -> None:
    """The daemon no longer knows the test bed (`--testbed` moved to `hwgate-testbed run`)."""
    for argv in ([], ["--testbed"], ["--testbed-dir", "x", "--config", "c.toml"]):
        done = subprocess.run(
            [sys.executable, "-m", "hwgated", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (argv, done)
        assert "usage: hwgated" in done.stderr
