"""Session tombstones: reasons, who may learn them, and both bounds."""

from __future__ import annotations

import pytest

from hwgated import errors
from hwgated.pcsc.tombstones import EndReason, Tombstones


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("why", "error"),
    [
        (EndReason.EXPIRED, errors.SessionExpired),
        (EndReason.CARD_REMOVED, errors.CardRemoved),
        (EndReason.READER_REMOVED, errors.CardRemoved),
        (EndReason.PCSC_DOWN, errors.CardRemoved),
        (EndReason.CLOSED, errors.SessionNotFound),
        (EndReason.SHUTDOWN, errors.SessionNotFound),
    ],
)
def test_the_owner_learns_why(why: EndReason, error: type[errors.HwgateError]) -> None:
    stones = Tombstones()
    stones.bury("s1", "kiosk:1000", "Reader 0", why, 30.0)
    got = stones.error_for("s1", "kiosk:1000")
    assert type(got) is error
    if error is not errors.SessionNotFound:
        assert got.fields == {"reader": "Reader 0"}
    assert len(stones) == (0 if why in (EndReason.CLOSED, EndReason.SHUTDOWN) else 1)


def test_a_stranger_learns_nothing() -> None:
    stones = Tombstones()
    stones.bury("s1", "kiosk:1000", "Reader 0", EndReason.CARD_REMOVED, 30.0)
    for owner in ("admin:1000", "kiosk:1001", ""):
        got = stones.error_for("s1", owner)
        assert type(got) is errors.SessionNotFound and not got.fields
    assert type(stones.error_for("unknown", "kiosk:1000")) is errors.SessionNotFound


def test_capacity_keeps_the_newest() -> None:
    stones = Tombstones(capacity=3)
    for i in range(5):
        stones.bury(f"s{i}", "me", "R", EndReason.EXPIRED, 1.0)
    assert len(stones) == 3
    assert type(stones.error_for("s1", "me")) is errors.SessionNotFound
    assert type(stones.error_for("s2", "me")) is errors.SessionExpired


def test_lifetime_forgets_old_tombstones() -> None:
    clock = Clock()
    stones = Tombstones(lifetime=600.0, clock=clock)
    stones.bury("old", "me", "R", EndReason.CARD_REMOVED, 1.0)
    clock.now += 300
    stones.bury("new", "me", "R", EndReason.EXPIRED, 1.0)
    clock.now += 301
    assert type(stones.error_for("old", "me")) is errors.SessionNotFound
    assert type(stones.error_for("new", "me")) is errors.SessionExpired
    assert len(stones) == 1
    clock.now += 300
    assert type(stones.error_for("new", "me")) is errors.SessionNotFound
    assert len(stones) == 0


@pytest.mark.parametrize("why", [EndReason.EXPIRED, EndReason.CARD_REMOVED, EndReason.PCSC_DOWN])
def test_closing_an_ended_session_stays_not_found_and_names_the_end(why: EndReason) -> None:
    stones = Tombstones()
    stones.bury("s1", "me", "Reader 0", why, 30.0)
    got = stones.error_for("s1", "me", closing=True)
    assert type(got) is errors.SessionNotFound
    assert got.fields == {"ended": why.name.lower(), "reader": "Reader 0"}
    stranger = stones.error_for("s1", "you", closing=True)
    assert type(stranger) is errors.SessionNotFound and not stranger.fields
