"""``make demo`` run twice on one test bed directory (its own module: the demo binds the
test bed's fixed ports, 7443/8443/8080, which the ``stack`` fixture's hwgated also uses).

Before, every run added an enrollment for alice to ``DIR/apps/enrollment.sqlite3`` and
the fourth run hit the server's cap (3). Each run now starts from a fresh database, so
after every run it holds exactly that run's one enrollment."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hwgate_apps import browser, demo

pytestmark = [pytest.mark.testbed, pytest.mark.slow]
MISSING = browser.chromium_missing()


def enrollments(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT id, status FROM enrollments").fetchall()


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "chromium present")
def test_demo_twice_in_a_row_on_one_directory(
    testbed: object, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    bed = tmp_path_factory.mktemp("demo-bed")
    seen: list[list[tuple[str, str]]] = []
    for run in (1, 2):
        shot = bed / f"qr-{run}.png"
        code = demo.main(["--dir", str(bed), "--screenshot", str(shot)])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "phone: P-256 key made on the phone" in out and shot.is_file()
        assert "phone: signed in (its poll got the token)" in out
        assert "phone: S/MIME signing certificate for alice@hwgate.example" in out
        assert "the phone decrypted it: 'Subject: for your card'" in out
        assert (bed / "kiosk-code.png").is_file() and (bed / "kiosk-approve.png").is_file()
        rows = enrollments(bed / "apps" / demo.DATABASE)
        assert [status for _, status in rows] == ["issued"], rows  # this run's only
        seen.append(rows)
    assert seen[0] != seen[1]  # a new database, not the old one kept
