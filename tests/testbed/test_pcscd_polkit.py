"""The test bed's private pcscd and polkit (pcsc-lite 2.x on Debian 13).

Debian 13's pcscd asks polkit about every client and, with no polkit authority
reachable, refuses them all; the bed's own pcscd in testbed/isolated is reachable
by the bed alone, so it runs with --disable-polkit when that pcscd has the
option. pcscd 1.9 (Debian 12) has no such option and gets none.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from hwgate_testbed import pcscd, procs

# `pcscd --help` of pcsc-lite 1.9.9 (Debian 12) and 2.3.3 (Debian 13), abridged.
HELP_1_9 = """Usage: pcscd options
Options:
  -a, --apdu\t\tlog APDU commands and results
  -c, --config\t\tnew reader.conf.d path
  -x, --auto-exit\tpcscd will quit after 60 seconds of inactivity
  -I, --reader-name-no-interface do not include the USB interface name in the name
"""
HELP_2_3 = HELP_1_9 + "  --disable-polkit\tdisable polkit support\n"


def test_help_parsing_finds_the_option_only_where_offered() -> None:
    assert not pcscd.help_lists_disable_polkit(HELP_1_9)
    assert pcscd.help_lists_disable_polkit(HELP_2_3)
    assert not pcscd.help_lists_disable_polkit("  --disable-polkitx\tno\n")


def _fake_pcscd(directory: Path, help_text: str) -> str:
    exe = directory / "pcscd"
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{help_text}EOF\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def test_support_is_read_from_the_binary(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    assert not pcscd.supports_disable_polkit(_fake_pcscd(tmp_path / "old", HELP_1_9))
    assert pcscd.supports_disable_polkit(_fake_pcscd(tmp_path / "new", HELP_2_3))
    assert not pcscd.supports_disable_polkit(str(tmp_path / "missing"))


def _installed_pcscd_offers_it() -> bool:
    out = subprocess.run(
        [pcscd.pcscd_exe(), "--help"], capture_output=True, text=True, timeout=10, check=False
    )
    return "--disable-polkit" in out.stdout + out.stderr


def test_a_shared_run_dir_keeps_polkit(tmp_path: Path) -> None:
    """A run directory that is not a private mount: the machine's policy decides."""
    assert not pcscd.is_private_run_dir(tmp_path)
    assert pcscd.DISABLE_POLKIT not in pcscd.command("-i", run_dir=tmp_path)


@pytest.mark.testbed
def test_the_beds_own_pcscd_runs_without_polkit_where_it_can(testbed: object) -> None:
    paths = testbed.paths  # type: ignore[attr-defined]
    status = pcscd.status(paths)
    if not status.started_here or status.pid is None:
        pytest.skip("pcscd is not the test bed's (as root, make test isolates it)")
    assert os.geteuid() == 0 and pcscd.is_private_run_dir()
    argv = procs.cmdline(status.pid) or []
    # Debian 13: the option is there and used; Debian 12: neither.
    assert (pcscd.DISABLE_POLKIT in argv) == _installed_pcscd_offers_it(), argv
    assert pcscd.vpcd_answers()  # and the bed's clients reach it
