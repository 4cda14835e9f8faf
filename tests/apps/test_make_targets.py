"""The app make targets: `make demo` leaves the tracked tree alone; only
`make demo-screenshot` rewrites docs/kiosk-qr.png (before: every `make demo` did)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hwgate_apps import demo
from hwgate_testbed.paths import TestbedPaths

ROOT = Path(__file__).resolve().parents[2]
TRACKED = "docs/kiosk-qr.png"


def _dry_run(target: str) -> str:
    """The commands `make -n TARGET` would run (nothing is executed but sub-makes)."""
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", target], cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@needs_make
def test_make_demo_does_not_write_the_tracked_screenshot() -> None:
    commands = _dry_run("demo")
    assert "hwgate_apps.demo" in commands
    assert TRACKED not in commands and "--screenshot" not in commands


@needs_make
def test_make_demo_screenshot_writes_it() -> None:
    commands = _dry_run("demo-screenshot")
    assert f"--screenshot {ROOT / TRACKED}" in commands


def test_demo_default_screenshot_is_beside_the_test_bed(tmp_path: Path) -> None:
    paths = TestbedPaths.at(tmp_path)
    assert demo.default_screenshot(paths) == tmp_path / "kiosk-qr.png"
