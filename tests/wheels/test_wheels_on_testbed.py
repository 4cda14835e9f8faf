"""All four wheels, installed (not editable) into a fresh venv outside the checkout,
run the daemon on the test bed the way `make run` does: `hwgate-testbed run`
brings the bed up and execs the venv's `hwgated --config DIR/hwgated.toml`, and
the venv's `hwgate health` reports every service SERVING. A module or data file
missing from a wheel, or a dependency only the development venv has, fails here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from wheel_support import DISTRIBUTIONS, Wheelhouse, clean_env, fresh_venv, install
from wheel_support import run_checked as run

from hwgate_testbed.pytest_plugin import Testbed
from support.logscan import register_log

pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.timeout(900)]

SERVICES = ["", "hwgate.v1.CardService", "hwgate.v1.PivService", "hwgate.v1.HsmService"]
STARTUP_TIMEOUT = 60.0

PACKAGE_DATA = """
from importlib import resources
import hwgate, hwgated, hwgate_testbed, hwgate_apps
page = resources.files("hwgate_apps.kiosk").joinpath("page.html").read_text()
assert "<html" in page.lower(), page[:80]
for pkg in (hwgate, hwgated, hwgate_testbed, hwgate_apps):
    print(pkg.__file__)
"""


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _health(hwgate: Path, admin: Path, cwd: Path) -> dict[str, str] | str:
    """The daemon's own view of its services over its admin socket (the CLI waits
    up to its connect timeout for the socket), or the CLI's error."""
    done = subprocess.run(
        [str(hwgate), "--addr", f"unix://{admin}", "--connect-timeout", "10", "health", "--json"],
        cwd=cwd, env=clean_env(hwgate.parent), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        return done.stderr.strip()
    status: dict[str, str] = json.loads(done.stdout)
    return status


def test_installed_wheels_run_the_daemon_on_the_test_bed(
    wheelhouse: Wheelhouse, testbed: Testbed, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    install(python, wheelhouse, *DISTRIBUTIONS.values())
    files = run([python, "-c", PACKAGE_DATA], cwd=tmp_path).stdout.split()
    assert len(files) == 4
    assert all(Path(f).is_relative_to(venv) for f in files), files

    # stdout: the test bed's summary, which shows its (public) test PINs by design;
    # stderr: the daemon's log, scanned for PINs at the end of the session.
    summary, log = tmp_path / "run.out", tmp_path / "hwgated.log"
    register_log(log)
    with summary.open("wb") as out, log.open("wb") as err:
        proc = subprocess.Popen(
            [venv / "bin" / "hwgate-testbed", "run", "--dir", testbed.root, "--no-insert"],
            cwd=tmp_path,
            env=clean_env(venv / "bin"),
            stdout=out,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        status: dict[str, str] | str = {}
        while status != dict.fromkeys(SERVICES, "SERVING"):
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{status}\n{log.read_text()}"
            status = _health(venv / "bin" / "hwgate", testbed.paths.admin_socket, tmp_path)
        assert f"# exec {venv / 'bin' / 'hwgated'} --config" in summary.read_text()
        # `run` exec'd the venv's daemon: same pid, now hwgated on the bed's config.
        argv = _cmdline(proc.pid)
        assert str(venv / "bin" / "hwgated") in argv, argv
        assert argv[-2:] == ["--config", str(testbed.paths.daemon_config)], argv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, log.read_text()
    assert not testbed.paths.admin_socket.exists()  # stopped cleanly, socket removed
