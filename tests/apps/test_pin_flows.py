"""The kiosk's PIN change and PIN unblock flows through its HTTP API (no browser)."""

from __future__ import annotations

import pytest
from apps_support import PIN, kiosk_post, on, wait_screen

from hwgate_apps.stack import Stack
from hwgate_testbed.paths import PIV_PUK

pytestmark = pytest.mark.testbed
NEW_PIN = "24681357"


def test_change_pin_then_verify_the_new_one(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    wait_screen(stack, on("pin"))
    wrong = kiosk_post(stack, "/api/change-pin", {"pin": "654321", "new_pin": NEW_PIN}).json()
    assert (wrong["screen"], wrong["retries_left"]) == ("pin", 2)
    changed = kiosk_post(stack, "/api/change-pin", {"pin": PIN, "new_pin": NEW_PIN}).json()
    assert (changed["screen"], changed["retries_left"]) == ("pin", 3)
    assert "PIN changed" in changed["message"]
    refused = kiosk_post(stack, "/api/change-pin", {"pin": PIN, "new_pin": "12"})
    assert refused.status_code == 400 and refused.json()["error"] == "pin_format"
    assert kiosk_post(stack, "/api/pin", {"pin": PIN}).json()["screen"] == "pin"  # old: wrong
    assert kiosk_post(stack, "/api/pin", {"pin": NEW_PIN}).json()["screen"] == "ready"


def test_blocked_pin_is_unblocked_with_the_puk(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    wait_screen(stack, on("pin"))
    for wrong in ("654321", "11112222", "9999999"):
        screen = kiosk_post(stack, "/api/pin", {"pin": wrong, "allow_last_attempt": True}).json()
    assert screen["screen"] == "blocked"
    bad = kiosk_post(stack, "/api/unblock", {"puk": "87654321", "new_pin": NEW_PIN}).json()
    assert (bad["screen"], bad["puk_last_attempt"]) == ("blocked", False)
    assert "2 tries left" in bad["message"]
    assert (
        kiosk_post(stack, "/api/unblock", {"puk": "short", "new_pin": NEW_PIN}).status_code == 400
    )
    done = kiosk_post(stack, "/api/unblock", {"puk": PIV_PUK, "new_pin": NEW_PIN}).json()
    assert (done["screen"], done["retries_left"]) == ("pin", 3), done
    assert kiosk_post(stack, "/api/pin", {"pin": NEW_PIN}).json()["screen"] == "ready"


def test_unblock_is_only_offered_on_the_blocked_screen(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    wait_screen(stack, on("pin"))
    refused = kiosk_post(stack, "/api/unblock", {"puk": PIV_PUK, "new_pin": NEW_PIN})
    assert refused.status_code == 409 and refused.json()["error"] == "wrong_screen"
