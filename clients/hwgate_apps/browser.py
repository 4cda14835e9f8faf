"""Drive the kiosk page in headless Chromium (playwright with the system browser).

Never ``playwright install``: the Debian ``chromium`` package is launched by
path, with the flags that keep it from reaching the network on its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_missing() -> str:
    """Why the browser cannot run here, or "" when it can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is absent (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    if shutil.which("zbarimg") is None:
        return "zbarimg is absent (apt-get install zbar-tools)"
    return ""


@contextmanager
def kiosk_page(url: str) -> Iterator[Any]:
    """A page showing the kiosk at *url*, in a fresh headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100})
            page.goto(url)
            yield page
        finally:
            browser.close()


def enter_pin(page: Any, pin: str) -> None:
    """Press the on-screen PIN pad like a person would, then OK."""
    for digit in pin:
        page.click(f'#s-pin button[data-digit="{digit}"]')
    page.click("#pin-ok")


def wait_screen(page: Any, screen: str, timeout_ms: float = 20000) -> None:
    page.wait_for_selector(f"#s-{screen}", state="visible", timeout=timeout_ms)
