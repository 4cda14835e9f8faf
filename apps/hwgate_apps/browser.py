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

# Screens the flow cannot leave by itself: waiting on for another one is pointless.
STOP_SCREENS = ("error", "blocked")
_READ_TIMEOUT_MS = 2000  # reading what the page shows, after something went wrong

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


class PageError(RuntimeError):
    """The kiosk page is not where the driver expected; the message (one line) says
    what it shows instead: the screen and the page's status message."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextmanager
def kiosk_page(url: str) -> Iterator[Any]:
    """A page showing the kiosk at *url*, in a fresh headless Chromium.

    Inside the block, a failed page action (a click or read that timed out, a
    crashed page) comes out as PageError naming what the page shows, not as a
    playwright stack trace.
    """
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        except Error as exc:
            raise PageError(f"cannot start {CHROMIUM}: {_first_line(exc)}") from None
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100})
            try:
                page.goto(url)
                yield page
            except Error as exc:
                raise PageError(f"{_first_line(exc)}; the page shows {showing(page)}") from None
        finally:
            browser.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return _one_line(text.splitlines()[0]) if text else type(exc).__name__


def showing(page: Any) -> str:
    """What the page shows, in one line: ``screen 'error': <status message>``."""
    from playwright.sync_api import Error

    try:
        shown = page.locator("section[data-screen]:not([hidden])")
        names = [
            shown.nth(i).get_attribute("data-screen", timeout=_READ_TIMEOUT_MS)
            for i in range(shown.count())
        ]
        message = page.text_content("#status", timeout=_READ_TIMEOUT_MS) or ""
    except Error as exc:
        return f"nothing readable ({_first_line(exc)})"
    screens = ", ".join(f"'{n}'" for n in names) or "no"
    text = f"screen {screens}"
    return f"{text}: {_one_line(message)}" if message.strip() else f"{text} (no message)"


def enter_pin(page: Any, pin: str) -> None:
    """Press the on-screen PIN pad like a person would, then OK."""
    for digit in pin:
        page.click(f'#s-pin button[data-digit="{digit}"]')
    page.click("#pin-ok")


def wait_screen(page: Any, screen: str, timeout_ms: float = 20000) -> None:
    """Return once *screen* shows; raise PageError saying what the page shows instead
    when it times out or lands on a screen the flow cannot leave (error, blocked)."""
    from playwright.sync_api import Error

    stops = [s for s in STOP_SCREENS if s != screen]
    selector = ", ".join(f"#s-{name}:not([hidden])" for name in (screen, *stops))
    try:
        found = page.wait_for_selector(selector, state="attached", timeout=timeout_ms)
        landed = found.get_attribute("data-screen") if found is not None else None
    except Error:
        landed = None
    if landed == screen:
        return
    raise PageError(f"the kiosk page did not reach '{screen}': it shows {showing(page)}")
