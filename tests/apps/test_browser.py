"""The kiosk page in headless Chromium: PIN pad, retries, QR code that decodes, reset."""

from __future__ import annotations

from pathlib import Path

import pytest
from apps_support import PIN

from hwgate_apps import browser
from hwgate_apps.phone.qr import decode_png
from hwgate_apps.stack import Stack

pytestmark = pytest.mark.testbed
MISSING = browser.chromium_missing()


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "chromium present")
def test_kiosk_page_flow_in_chromium(stack: Stack, cards: object, tmp_path: Path) -> None:
    with browser.kiosk_page(stack.kiosk_url) as page:
        browser.wait_screen(page, "insert")
        cards.insert(0, "alice")  # type: ignore[attr-defined]
        browser.wait_screen(page, "pin")
        assert page.text_content("#s-pin .name").startswith("alice")
        assert page.text_content("#retries") == "3 tries left"

        browser.enter_pin(page, "999999")
        page.locator("#retries", has_text="2 tries left").wait_for()  # CSP forbids eval
        assert "Wrong PIN" in page.text_content("#status")
        assert page.input_value("#pin") == ""  # the page keeps no copy of the PIN

        page.fill("#pin", PIN)  # the keyboard works as well as the pad
        page.press("#pin", "Enter")
        browser.wait_screen(page, "ready")
        page.click("#request")
        browser.wait_screen(page, "qr")
        shot = tmp_path / "qr.png"
        page.screenshot(path=str(shot))
        code = page.text_content("#code").replace(" ", "")
        assert decode_png(shot).endswith(f"code={code}")
        assert "Valid for" in page.text_content("#countdown")

        cards.remove(0)  # type: ignore[attr-defined]
        browser.wait_screen(page, "insert")
        assert page.inner_html("#qr") == ""
