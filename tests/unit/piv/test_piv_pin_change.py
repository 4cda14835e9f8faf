"""CHANGE REFERENCE DATA / RESET RETRY COUNTER: exact bytes, wiping, and status-word meaning.

The protocol layer against scripted cards; the PIV application layer
(hwgated.pivapp.pinchange) against a scripted connection, for the answers the
virtual card never gives (6300 without a count, 6983 on a PUK the daemon had
no count for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from piv_fakes import ScriptedCard

from hwgated import errors as gw
from hwgated.piv import commands, errors
from hwgated.piv.commands import PinFormatError
from hwgated.piv.pinbuffer import PinBuffer
from hwgated.piv.session import PivCard
from hwgated.pivapp.pinchange import PukState, change_pin, unblock_pin

SELECT = commands.select_piv().encode().hex()
CHANGE = "002400801031323334353637FF3837363534333231"  # 1234567 -> 87654321
RESET = "002C0080103132333435363738313131313131FFFF"  # PUK 12345678, new PIN 111111
RESET_STATUS = "0020FF80"
GET_DISCOVERY = "00CB3FFF035C017E00"  # which PIN is the cardholder's (global or PIV)

pins = st.text(alphabet="0123456789", min_size=6, max_size=8).map(str.encode)


@given(old=pins, new=pins)
def test_change_pin_pads_each_pin_to_eight_bytes(old: bytes, new: bytes) -> None:
    cmd = commands.change_pin(bytearray(old), bytearray(new))
    apdu = cmd.encode()
    assert apdu[:5] == bytes.fromhex("0024008010")
    assert apdu[5:13].rstrip(b"\xff") == old and apdu[13:].rstrip(b"\xff") == new
    cmd.wipe()
    assert cmd.data == bytearray(16)


@given(puk=st.binary(min_size=8, max_size=8), new=pins)
def test_reset_retry_counter_takes_any_eight_byte_puk(puk: bytes, new: bytes) -> None:
    apdu = commands.reset_retry_counter(puk, new).encode()
    assert apdu[:5] == bytes.fromhex("002C008010")
    assert apdu[5:13] == puk and apdu[13:].rstrip(b"\xff") == new


@given(pin=st.binary(max_size=10).filter(lambda b: not (6 <= len(b) <= 8 and b.isdigit())))
def test_malformed_pins_are_refused_either_side(pin: bytes) -> None:
    with pytest.raises(PinFormatError):
        commands.change_pin(pin, b"123456")
    with pytest.raises(PinFormatError):
        commands.change_pin(b"123456", pin)
    with pytest.raises(PinFormatError):
        commands.reset_retry_counter(b"12345678", pin)


@pytest.mark.parametrize("puk", [b"", b"1234567", b"123456789"])
def test_puk_must_be_eight_bytes(puk: bytes) -> None:
    with pytest.raises(PinFormatError, match="PUK must be 8 bytes"):
        commands.reset_retry_counter(puk, b"123456")


def test_exact_bytes() -> None:
    assert commands.change_pin(b"1234567", b"87654321").encode().hex().upper() == CHANGE
    assert commands.reset_retry_counter(b"12345678", b"111111").encode().hex().upper() == RESET
    assert commands.reset_pin_status().encode().hex().upper() == RESET_STATUS


@pytest.mark.parametrize(
    ("sw", "error", "left"),
    [
        ("63C1", errors.InvalidPin, 1),
        ("6300", errors.InvalidPin, None),
        ("6983", errors.PinBlocked, None),
    ],
)
def test_card_errors(sw: str, error: type[errors.PivError], left: int | None) -> None:
    card = ScriptedCard([(RESET, sw)])
    with pytest.raises(error) as info:
        PivCard(card).unblock_pin(bytearray(b"12345678"), bytearray(b"111111"))
    if left is not None:
        assert info.value.retries_left == left  # type: ignore[attr-defined]
    card = ScriptedCard([(CHANGE, sw)])
    with pytest.raises(error):
        PivCard(card).change_pin(bytearray(b"1234567"), bytearray(b"87654321"))


@dataclass
class ScriptedConnection:
    """The pcsc Connection protocol over a ScriptedCard."""

    card: ScriptedCard
    reader: str = "Fake Reader 0"
    atr: bytes = b"\x3b\x00"
    exchanges: int = 0
    outside_resets: int = 0
    states: dict[type, Any] = field(default_factory=dict)

    def send(self, apdu: bytes) -> bytes:
        self.exchanges += 1
        return self.card(apdu)

    def state(self, kind: type) -> Any:
        return self.states.setdefault(kind, kind())


def _unblock(link: ScriptedConnection, allow_last: bool = False) -> int | None:
    return unblock_pin(
        link,  # type: ignore[arg-type]
        PinBuffer(b"12345678"),
        PinBuffer(b"111111"),
        allow_last,
        "session-1",
    )


def test_a_puk_blocked_before_the_daemon_knew_is_remembered() -> None:
    link = ScriptedConnection(ScriptedCard([(SELECT, "9000"), (RESET, "6983")]))
    with pytest.raises(gw.PukBlocked) as info:
        _unblock(link)
    assert info.value.metadata == {"retries_left": "0"}
    assert link.state(PukState).retries_left == 0
    with pytest.raises(gw.PukBlocked):  # refused on the host: the script has nothing left
        _unblock(link, allow_last=True)
    assert link.card.done()


def test_a_wrong_puk_without_a_count() -> None:
    link = ScriptedConnection(ScriptedCard([(SELECT, "9000"), (RESET, "6300")]))
    with pytest.raises(gw.PukIncorrect) as info:
        _unblock(link)
    assert info.value.metadata == {}
    assert link.state(PukState).retries_left is None


def test_success_resets_the_card_pin_status_even_when_the_card_cannot() -> None:
    link = ScriptedConnection(
        ScriptedCard([(SELECT, "9000"), (RESET, "9000"), (RESET_STATUS, "6A86")])
    )
    link.state(PukState).retries_left = 2
    assert _unblock(link) == 2
    assert link.card.done() and link.state(PukState).retries_left is None


def test_an_abandoned_call_sends_nothing_and_wipes_both() -> None:
    link = ScriptedConnection(
        ScriptedCard([(SELECT, "9000"), (GET_DISCOVERY, "6A82"), ("00200080", "63C3")])
    )
    old, new = PinBuffer(b"1234567"), PinBuffer(b"87654321")
    new.abandon()  # the servicer's call ended before the worker ran
    with pytest.raises(gw.CardError):
        change_pin(link, old, new, False, "session-1")  # type: ignore[arg-type]
    assert old.wiped and new.wiped and link.card.done()
