"""Shared mode: what a reset by another program does to the daemon's PIV records.

The worker reports such a reset to the connection (``outside_reset``); the next
``PivApp`` on it forgets the selection and moves every session's verified PIN to
the "lost" set, so a session's next PIN check says the card was reset instead of
a bare "verify first". Real CardConnection, a stand-in for the pyscard handle.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from hwgated import errors
from hwgated.pcsc.connection import CardConnection
from hwgated.piv.slots import Slot
from hwgated.pivapp.app import PivApp
from hwgated.pivapp.pin import session_app
from hwgated.pivapp.sign import check_pin_precondition


class _Handle:
    """The two calls CardConnection makes on a pyscard handle before any APDU."""

    def atr(self) -> bytes:
        return bytes.fromhex("3B8880010000000000000000")


def _connection() -> CardConnection:
    return CardConnection("Fake Reader 0", cast(Any, _Handle()), insertion=1)


def _verified(connection: CardConnection, *sessions: str) -> PivApp:
    app = PivApp(connection)
    app.state.is_piv = app.state.selected = True
    app.state.exchanges_seen = connection.exchanges
    app.state.pin_verified.update(sessions)
    return app


def _pin_required(app: PivApp, slot: Slot, session: str) -> errors.HwgateError:
    with pytest.raises(errors.PinRequired) as err:
        check_pin_precondition(app, slot, session, require=True)
    return err.value


def test_a_reset_by_another_program_voids_verified_pins_and_says_so() -> None:
    connection = _connection()
    _verified(connection, "s1")
    connection.outside_reset()

    app = PivApp(connection)
    assert not app.state.pin_verified
    assert app.state.pin_lost == {"s1"}
    assert not app.state.selected  # selected again before the next command
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        lost = _pin_required(app, slot, "s1")
        assert lost.fields == {"cause": "card_reset"}
        assert "another program reset the card" in lost.message
    other = _pin_required(app, Slot.AUTHENTICATION, "s2")  # never verified: plain answer
    assert other.fields == {}
    assert "needs VerifyPin in this session first" in other.message
    # The session's next PIN operation starts from nothing, the reset forgotten.
    assert "s1" not in session_app(connection, "s1").state.pin_lost


def test_use_by_another_program_forgets_the_selection_not_the_pin() -> None:
    connection = _connection()
    _verified(connection, "s1")
    connection.outside_use()

    app = PivApp(connection)
    assert app.state.pin_verified == {"s1"}
    assert not app.state.pin_lost
    assert not app.state.selected
    assert connection.outside_resets == 0


def test_a_reset_is_counted_once() -> None:
    connection = _connection()
    _verified(connection, "s1")
    connection.outside_reset()
    PivApp(connection)
    app = _verified(connection, "s2")  # verified after the reset: it holds
    assert PivApp(connection).state.pin_verified == {"s2"}
    assert app.state.pin_lost == {"s1"}
