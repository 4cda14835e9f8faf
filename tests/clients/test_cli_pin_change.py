"""``hwgate card change-pin`` / ``unblock-pin`` against the real daemon, as the test bed's
kiosk role (its policy must allow both). Secrets come from --pin-stdin, one per line."""

from __future__ import annotations

import json

import pytest
from clients_support import CliResult, Gateway, run_cli

from hwgate_testbed.paths import PIV_PIN, PIV_PUK, vpcd_reader

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)
NEW_PIN = "24681357"


def kiosk(gateway: Gateway, *args: str, stdin: str = "") -> CliResult:
    return run_cli(["--addr", gateway.kiosk, *args], stdin=stdin.encode())


def lines(*secrets: str) -> str:
    return "".join(f"{s}\n" for s in secrets)


def assert_no_secret(result: CliResult, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.out and secret not in result.err


def test_change_then_unblock_from_stdin(gateway: Gateway, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    changed = kiosk(
        gateway, "--json", "card", "change-pin", "--reader", R0, "--pin-stdin",
        stdin=lines(PIV_PIN, NEW_PIN),
    )  # fmt: skip
    assert changed.code == 0, changed.err
    assert changed.json() == {"reader": R0, "changed": True}
    assert_no_secret(changed, PIV_PIN, NEW_PIN)
    old = kiosk(gateway, "card", "verify-pin", "--reader", R0, "--pin-stdin", stdin=lines(PIV_PIN))
    assert old.code == 64 + 9 and "PIN_INCORRECT" in old.err
    new = kiosk(gateway, "card", "verify-pin", "--reader", R0, "--pin-stdin", stdin=lines(NEW_PIN))
    assert new.code == 0, new.err

    unblocked = kiosk(
        gateway, "card", "unblock-pin", "--reader", R0, "--pin-stdin",
        stdin=lines(PIV_PUK, PIV_PIN),
    )  # fmt: skip
    assert unblocked.code == 0, unblocked.err
    assert "PIN unblocked" in unblocked.out
    assert_no_secret(unblocked, PIV_PUK, PIV_PIN)
    back = kiosk(gateway, "card", "verify-pin", "--reader", R0, "--pin-stdin", stdin=lines(PIV_PIN))
    assert back.code == 0, back.err


def test_wrong_puk_reports_the_puk_retries(gateway: Gateway, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    wrong = kiosk(
        gateway, "--json", "card", "unblock-pin", "--reader", R0, "--pin-stdin",
        stdin=lines("87654321", NEW_PIN),
    )  # fmt: skip
    assert wrong.code == 64 + 9, wrong.err  # FAILED_PRECONDITION
    error = json.loads(wrong.err)
    assert (error["reason"], error["metadata"]) == ("PUK_INCORRECT", {"retries_left": "2"})
    assert_no_secret(wrong, "87654321", NEW_PIN)


@pytest.mark.parametrize(
    ("verb", "stdin", "missing"),
    [
        ("change-pin", lines(PIV_PIN), "line 2 (new PIN)"),
        ("unblock-pin", "", "line 1 (PUK)"),
        ("unblock-pin", lines(PIV_PUK, ""), "line 2 (new PIN)"),
    ],
)
def test_missing_lines_fail_before_any_call(
    gateway: Gateway, verb: str, stdin: str, missing: str
) -> None:
    result = kiosk(gateway, "card", verb, "--reader", R0, "--pin-stdin", stdin=stdin)
    assert result.code == 1 and missing in result.err
    assert_no_secret(result, PIV_PIN, PIV_PUK)


@pytest.mark.parametrize("verb", ["change-pin", "unblock-pin"])
def test_secrets_are_refused_as_arguments(gateway: Gateway, verb: str) -> None:
    assert kiosk(gateway, "card", verb, "--reader", R0, PIV_PIN, NEW_PIN).code == 1
