"""Command builders produce the exact bytes of SP 800-73-4 part 2."""

from __future__ import annotations

import pytest

from hwgated.piv import commands
from hwgated.piv.commands import PinFormatError
from hwgated.piv.objects import Algorithm, Slot
from hwgated.piv.tlv import Tlv, TlvError


def test_select_piv() -> None:
    assert commands.select_piv().encode() == bytes.fromhex("00A404000BA00000030800001000010000")


@pytest.mark.parametrize(
    ("tag", "apdu"),
    [
        (0x7E, "00CB3FFF035C017E00"),
        (0x7F61, "00CB3FFF045C027F6100"),
        (0x5FC102, "00CB3FFF055C035FC10200"),
    ],
)
def test_get_data(tag: int, apdu: str) -> None:
    assert commands.get_data(tag).encode() == bytes.fromhex(apdu)


def test_get_data_rejects_bad_tags() -> None:
    for tag in (0, 0x1000000):
        with pytest.raises(ValueError):
            commands.get_data(tag)


def test_verify_pin_pads_and_wipes() -> None:
    cmd = commands.verify_pin(bytearray(b"123456"))
    assert cmd.encode() == bytes.fromhex("0020008008313233343536FFFF")
    assert isinstance(cmd.data, bytearray)
    cmd.wipe()
    assert cmd.data == bytearray(8)


def test_verify_pin_eight_digits_global_reference() -> None:
    cmd = commands.verify_pin(b"12345678", reference=commands.PIN_REFERENCE_GLOBAL)
    assert cmd.encode() == bytes.fromhex("00200000083132333435363738")


@pytest.mark.parametrize("pin", [b"12345", b"123456789", b"12345a", b"123 456", b"\xff" * 6, b""])
def test_verify_pin_rejects_bad_format(pin: bytes) -> None:
    with pytest.raises(PinFormatError) as info:
        commands.verify_pin(pin)
    assert pin.decode("latin-1") not in str(info.value) or not pin


def test_verify_status() -> None:
    assert commands.verify_status().encode() == bytes.fromhex("00200080")


def test_change_pin_of_the_global_pin() -> None:
    """A global-PIN-primary card changes its global PIN: CHANGE REFERENCE DATA P2 00."""
    cmd = commands.change_pin(b"123456", b"87654321", reference=commands.PIN_REFERENCE_GLOBAL)
    assert cmd.encode() == bytes.fromhex("0024000010313233343536FFFF3837363534333231")


def test_general_authenticate_ecc() -> None:
    digest = bytes(range(32))
    cmd = commands.general_authenticate(Slot.AUTHENTICATION, Algorithm.ECCP256, digest)
    expected = "0087119A" + "26" + "7C24" + "8200" + "8120" + digest.hex() + "00"
    assert cmd.encode() == bytes.fromhex(expected)


def test_general_authenticate_rsa_is_extended_length_data_for_chaining() -> None:
    block = b"\x00\x01" + b"\xff" * 254
    cmd = commands.general_authenticate(Slot.SIGNATURE, Algorithm.RSA2048, block)
    assert (cmd.p1, cmd.p2) == (0x07, 0x9C)
    assert cmd.data == bytes(Tlv(0x7C, Tlv(0x82) + Tlv(0x81, block)))
    assert cmd.data[:6] == bytes.fromhex("7C820106 8200")


@pytest.mark.parametrize(
    ("alg", "size"), [(Algorithm.RSA2048, 255), (Algorithm.RSA1024, 256), (Algorithm.ECCP256, 33)]
)
def test_general_authenticate_rejects_wrong_sizes(alg: Algorithm, size: int) -> None:
    with pytest.raises(ValueError):
        commands.general_authenticate(Slot.AUTHENTICATION, alg, b"\x01" * size)


def test_ecdh() -> None:
    point = b"\x04" + b"\x11" * 64
    cmd = commands.ecdh(Slot.KEY_MANAGEMENT, Algorithm.ECCP256, point)
    assert cmd.encode() == bytes.fromhex("0087119D477C4582008541" + point.hex() + "00")
    with pytest.raises(ValueError):
        commands.ecdh(Slot.KEY_MANAGEMENT, Algorithm.ECCP256, b"\x02" + b"\x11" * 32)
    with pytest.raises(ValueError):
        commands.ecdh(Slot.KEY_MANAGEMENT, Algorithm.RSA2048, point)


def test_parse_general_authenticate() -> None:
    assert commands.parse_general_authenticate(bytes.fromhex("7C048202ABCD")) == b"\xab\xcd"
    for bad in ("7C00", "7C0481020000", "7D048202ABCD", "7C058202ABCD"):
        with pytest.raises(TlvError):
            commands.parse_general_authenticate(bytes.fromhex(bad))
