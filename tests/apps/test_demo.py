"""The ``make demo`` driver on the module's stack: when the server refuses (the
per-cardholder cap reached on purpose), it says so in one line and exits 1."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from apps_support import on, wait_screen

from hwgate_apps import browser, demo
from hwgate_apps.enrollment.service import EnrollmentService
from hwgate_apps.stack import Stack

pytestmark = pytest.mark.testbed
MISSING = browser.chromium_missing()
REFUSAL = "this cardholder already has the maximum of derived credentials"


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "chromium present")
def test_driver_reports_the_servers_refusal_in_one_line(
    stack: Stack, service: EnrollmentService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = service.config
    service.config = dataclasses.replace(original, max_credentials_per_cardholder=0)
    try:
        code = demo.drive(stack, tmp_path / "qr.png")
    finally:
        service.config = original
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("hwgate-demo: the kiosk page did not reach 'qr': it shows screen 'error'")
    assert f"The enrollment server refused: {REFUSAL}" in err
    assert not (tmp_path / "qr.png").exists()
    # It got as far as the phone's sign-in: code typed, approval screen shot.
    assert (tmp_path / "kiosk-code.png").is_file() and (tmp_path / "kiosk-approve.png").is_file()
    wait_screen(stack, on("insert"))  # the driver took its card out again


def test_fresh_state_removes_only_the_run_state(tmp_path: Path) -> None:
    for name in (*demo.RUN_STATE, "hwgated.log", "tls"):
        (tmp_path / name).write_text("x")
    removed = demo.fresh_state(tmp_path)
    assert sorted(p.name for p in removed) == sorted(demo.RUN_STATE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hwgated.log", "tls"]
    assert demo.fresh_state(tmp_path) == []
