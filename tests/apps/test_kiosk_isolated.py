"""``make kiosk`` as root: the stack in a private namespace, the page on the host.

Before: `make kiosk` was the only app target on the host's pcscd and ports (and,
with `make run` up, it silently used the other daemon). Now its pcscd, vpcd ports
and hwgated are private; the kiosk page is served on a port bound outside, and the
printed nsenter command inserts a card inside.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hwgate_testbed.timing import scaled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


pytestmark = [pytest.mark.testbed, pytest.mark.slow]
CAN_UNSHARE = (
    os.geteuid() == 0
    and subprocess.run(["unshare", "-mn", "true"], capture_output=True, check=False).returncode == 0
)


@pytest.mark.skipif(not CAN_UNSHARE or not shutil.which("nsenter"), reason="needs root + unshare")
def _pcscds_started_by(test: str) -> set[int]:
    """pcscd processes started while *test* ran (their environment names it)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "pcscd":
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if any(e.startswith(b"PYTEST_CURRENT_TEST=") and test.encode() in e for e in environ):
            found.add(int(proc.name))
    return found


def test_kiosk_runs_isolated_and_serves_the_host(tmp_path: Path) -> None:
    me = "test_kiosk_runs_isolated_and_serves_the_host"
    earlier = _pcscds_started_by(me)  # left by runs before the fix: not this run's
    port = free_port()
    bed = tmp_path / "kiosk-bed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwgate_apps.kiosk_isolated", "--dir", str(bed),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + scaled(120)
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        text = "".join(lines)
        assert f"Open http://127.0.0.1:{port}" in text, text
        # The page answers here, outside the stack's network namespace.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
        # The printed command inserts a card inside the namespace.
        found = re.search(r"^\s+(nsenter .*hwgate-testbed insert .*?)\s+\(PIN", text, re.M)
        assert found, text
        inserted = subprocess.run(shlex.split(found.group(1)), capture_output=True, text=True,
                                  timeout=scaled(60), check=False)  # fmt: skip
        assert inserted.returncode == 0, inserted.stderr
        removed = subprocess.run(shlex.split(found.group(1).replace(" insert ", " remove ")
                                             .replace(" --card alice", "")),
                                 capture_output=True, text=True, timeout=scaled(60),
                                 check=False)  # fmt: skip
        assert removed.returncode == 0, removed.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=scaled(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + (proc.stdout.read() if proc.stdout else "")
    # Its namespace's pcscd went with it (it used to outlive every make kiosk).
    assert _pcscds_started_by(me) - earlier == set()


def test_port_in_use_is_one_line_and_exit_1() -> None:
    from hwgate_apps import web

    busy = web.bind("127.0.0.1", 0)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hwgate_apps.kiosk_isolated", "--dir", "/nonexistent",
             "--port", str(busy.getsockname()[1])],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        busy.close()
    assert done.returncode == 1
    assert done.stderr.startswith("hwgate-kiosk: cannot listen on 127.0.0.1:")
