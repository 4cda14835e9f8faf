"""PivCard over a scripted connection: the APDUs it sends and what it makes of answers."""

from __future__ import annotations

import datetime
import uuid

import pytest
from piv_fakes import ScriptedCard

from hwgated.piv import commands, errors
from hwgated.piv.apdu import CommandApdu
from hwgated.piv.fascn import Fascn
from hwgated.piv.objects import Algorithm, Chuid, Slot, build_certificate_object
from hwgated.piv.session import PivCard
from hwgated.piv.tlv import Tlv

SELECT = "00A404000BA00000030800001000010000"
APT = "61164F0BA0000003080000100001007907 4F05A000000308"
CHUID = Chuid(
    Fascn("9999", "9999", "999999", "0", "1", "0000000000", "3", "0000", "1"),
    uuid.UUID(int=0x1234),
    datetime.date(2030, 1, 1),
)


def test_select_returns_apt() -> None:
    card = ScriptedCard([(SELECT, APT + "9000")])
    apt = PivCard(card).select()
    assert apt is not None and apt.aid.hex().upper() == "A000000308000010000100"


def test_select_without_apt_and_not_found() -> None:
    assert PivCard(ScriptedCard([(SELECT, "9000")])).select() is None
    with pytest.raises(errors.NotFound):
        PivCard(ScriptedCard([(SELECT, "6A82")])).select()


def test_read_chuid_through_get_response() -> None:
    data = CHUID.encode().hex()
    card = ScriptedCard(
        [
            ("00CB3FFF055C035FC10200", data[:40] + "61" + f"{(len(data) - 40) // 2:02X}"),
            ("00C00000" + f"{(len(data) - 40) // 2:02X}", data[40:] + "9000"),
        ]
    )
    assert PivCard(card).read_chuid() == CHUID
    assert card.done()


def test_read_certificate() -> None:
    der = b"\x30\x03\x02\x01\x05"
    obj = build_certificate_object(der, compress=True).hex()
    card = ScriptedCard(
        [("00CB3FFF055C035FC10500", obj + "9000"), ("00CB3FFF055C035FC10A00", "6A82")]
    )
    piv = PivCard(card)
    assert piv.read_certificate(Slot.AUTHENTICATION) == der
    assert piv.read_certificate(Slot.SIGNATURE) is None
    with pytest.raises(ValueError):
        piv.read_certificate(Slot.CARD_MANAGEMENT)


def test_read_discovery_optional() -> None:
    disc = "7E124F0BA0000003080000100001005F2F024000"
    card = ScriptedCard([("00CB3FFF035C017E00", disc + "9000"), ("00CB3FFF035C017E00", "6A82")])
    piv = PivCard(card)
    first = piv.read_discovery()
    assert first is not None and not first.global_pin_primary
    assert piv.read_discovery() is None


@pytest.mark.parametrize(("sw", "result"), [("9000", None), ("63C3", 3), ("63C0", 0), ("6983", 0)])
def test_pin_retries(sw: str, result: int | None) -> None:
    assert PivCard(ScriptedCard([("00200080", sw)])).pin_retries() == result


@pytest.mark.parametrize(
    ("sw", "error"), [("6A88", errors.ReferenceNotFound), ("6300", errors.InvalidPin)]
)
def test_pin_retries_errors(sw: str, error: type[errors.PivError]) -> None:
    with pytest.raises(error):
        PivCard(ScriptedCard([("00200080", sw)])).pin_retries()


class _CapturingBuilder:
    """Wraps commands.verify_pin to keep the APDU so the test can see it was wiped."""

    def __init__(self) -> None:
        self.cmd: CommandApdu | None = None
        self.real = commands.verify_pin

    def __call__(
        self, pin: bytes | bytearray, reference: int = commands.PIN_REFERENCE_APPLICATION
    ) -> CommandApdu:
        self.cmd = self.real(pin, reference)
        return self.cmd


@pytest.mark.parametrize(
    ("sw", "error"),
    [("9000", None), ("63C2", errors.InvalidPin), ("6983", errors.PinBlocked)],
)
def test_verify_pin_wipes_padded_copy(
    monkeypatch: pytest.MonkeyPatch, sw: str, error: type[errors.PivError] | None
) -> None:
    builder = _CapturingBuilder()
    monkeypatch.setattr(commands, "verify_pin", builder)
    card = ScriptedCard([("0020008008313233343536FFFF", sw)])
    pin = bytearray(b"123456")
    if error is None:
        PivCard(card).verify_pin(pin)
    else:
        with pytest.raises(error) as info:
            PivCard(card).verify_pin(pin)
        if error is errors.InvalidPin:
            assert info.value.retries_left == 2  # type: ignore[attr-defined]
    assert builder.cmd is not None and builder.cmd.data == bytearray(8)
    assert pin == bytearray(b"123456")  # the caller's buffer is the caller's to wipe


def test_sign_raw_rsa_chains_and_collects() -> None:
    block = b"\x00\x01" + b"\xff" * 254
    cmd = commands.general_authenticate(Slot.AUTHENTICATION, Algorithm.RSA2048, block)
    data = cmd.data.hex()
    signature = bytes(range(256))
    response = bytes(Tlv(0x7C, Tlv(0x82, signature))).hex()
    card = ScriptedCard(
        [
            ("1087079AFF" + data[:510], "9000"),
            (
                "0087079A" + f"{len(cmd.data) - 255:02X}" + data[510:] + "00",
                response[:400] + "6100",
            ),
            ("00C0000000", response[400:] + "9000"),
        ]
    )
    assert PivCard(card).sign_raw(Slot.AUTHENTICATION, Algorithm.RSA2048, block) == signature
    assert card.done()


def test_sign_raw_needs_pin() -> None:
    card = ScriptedCard([("0087119C" + "26" + "7C24820081" + "20" + "00" * 32 + "00", "6982")])
    with pytest.raises(errors.SecurityStatusNotSatisfied):
        PivCard(card).sign_raw(Slot.SIGNATURE, Algorithm.ECCP256, b"\x00" * 32)


def test_ecdh() -> None:
    point = b"\x04" + b"\x22" * 64
    shared = b"\x33" * 32
    apdu = commands.ecdh(Slot.KEY_MANAGEMENT, Algorithm.ECCP256, point).encode().hex()
    card = ScriptedCard([(apdu, bytes(Tlv(0x7C, Tlv(0x82, shared))).hex() + "9000")])
    assert PivCard(card).ecdh(Slot.KEY_MANAGEMENT, Algorithm.ECCP256, point) == shared
