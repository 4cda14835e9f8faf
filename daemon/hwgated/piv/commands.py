"""PIV card commands (SP 800-73-4 part 2 §3) as ``CommandApdu`` builders.

Builders validate what the card would otherwise reject with a vague status
word, so a bad request fails here with a clear ``ValueError``.

PIN wiping: :func:`verify_pin` copies the PIN, FF-padded, into a fresh
``bytearray`` that becomes the APDU's ``data``. Call ``cmd.wipe()`` (in a
``finally``) to zero it; the caller wipes its own PIN buffer. The one immutable
``bytes`` made by ``cmd.encode()`` for the transport cannot be wiped by Python;
it lives only for the duration of the transmit call.
"""

from __future__ import annotations

from .apdu import CommandApdu
from .slots import Algorithm, Slot
from .tlv import Tlv, TlvError

PIV_AID = bytes.fromhex("A000000308000010000100")

INS_SELECT = 0xA4
INS_GET_DATA = 0xCB
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
INS_GENERAL_AUTHENTICATE = 0x87

TAG_TAG_LIST = 0x5C
TAG_DYNAMIC_AUTH = 0x7C
TAG_AUTH_WITNESS = 0x80
TAG_AUTH_CHALLENGE = 0x81
TAG_AUTH_RESPONSE = 0x82
TAG_AUTH_EXPONENTIATION = 0x85

PIN_REFERENCE_APPLICATION = 0x80
PIN_REFERENCE_GLOBAL = 0x00
PUK_REFERENCE = 0x81
PUK_LENGTH = 8
VERIFY_RESET_STATUS = 0xFF  # VERIFY P1: reset the key reference's security status
PIN_MIN_LENGTH = 6
PIN_PADDED_LENGTH = 8
PIN_PAD = 0xFF

LE_MAX_SHORT = 256  # encodes as Le = 00


class PinFormatError(ValueError):
    """A PIN that is not 6 to 8 ASCII digits (the message never contains the PIN)."""


def select_piv() -> CommandApdu:
    """SELECT the PIV application by its full AID, asking for the APT."""
    return CommandApdu(0x00, INS_SELECT, 0x04, 0x00, PIV_AID, le=LE_MAX_SHORT)


def get_data(tag: int) -> CommandApdu:
    """GET DATA for a 1-, 2- or 3-byte object tag (7E, 7F61, 5FC1xx)."""
    if not 0 < tag <= 0xFFFFFF:
        raise ValueError(f"object tag 0x{tag:X} is not 1 to 3 bytes")
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    return CommandApdu(
        0x00, INS_GET_DATA, 0x3F, 0xFF, bytes(Tlv(TAG_TAG_LIST, tag_bytes)), le=LE_MAX_SHORT
    )


def _check_pin(pin: bytes | bytearray) -> None:
    if not PIN_MIN_LENGTH <= len(pin) <= PIN_PADDED_LENGTH:
        raise PinFormatError(f"PIN must be {PIN_MIN_LENGTH} to {PIN_PADDED_LENGTH} digits")
    if not all(0x30 <= b <= 0x39 for b in pin):
        raise PinFormatError("PIN must contain only ASCII digits")


def verify_pin(pin: bytes | bytearray, reference: int = PIN_REFERENCE_APPLICATION) -> CommandApdu:
    """VERIFY with the PIN padded to 8 bytes with FF; ``cmd.wipe()`` zeros the copy."""
    _check_pin(pin)
    padded = bytearray(PIN_PADDED_LENGTH)
    padded[:] = bytes([PIN_PAD]) * PIN_PADDED_LENGTH
    padded[: len(pin)] = pin
    return CommandApdu(0x00, INS_VERIFY, 0x00, reference, padded)


def _two_blocks(first: bytes | bytearray, second: bytes | bytearray) -> bytearray:
    """Both secrets in one preallocated 16-byte buffer, FF-padded: one copy to wipe."""
    data = bytearray([PIN_PAD]) * (2 * PIN_PADDED_LENGTH)
    data[: len(first)] = first
    data[PIN_PADDED_LENGTH : PIN_PADDED_LENGTH + len(second)] = second
    return data


def check_puk(puk: bytes | bytearray) -> None:
    """PinFormatError unless the PUK is 8 bytes (any values; SP 800-73-4 part 2 §2.4.3)."""
    if len(puk) != PUK_LENGTH:
        raise PinFormatError(f"PUK must be {PUK_LENGTH} bytes")


def change_pin(
    old: bytes | bytearray,
    new: bytes | bytearray,
    reference: int = PIN_REFERENCE_APPLICATION,
) -> CommandApdu:
    """CHANGE REFERENCE DATA of a PIN (80, or 00 the global PIN): old ‖ new, each
    FF-padded to 8 bytes.

    Both PINs are checked first (PinFormatError). ``cmd.wipe()`` zeros the copy.
    """
    _check_pin(old)
    _check_pin(new)
    data = _two_blocks(old, new)
    return CommandApdu(0x00, INS_CHANGE_REFERENCE_DATA, 0x00, reference, data)


def reset_retry_counter(puk: bytes | bytearray, new_pin: bytes | bytearray) -> CommandApdu:
    """RESET RETRY COUNTER of the application PIN: PUK (8 bytes) ‖ new PIN FF-padded.

    Both are checked first (PinFormatError). ``cmd.wipe()`` zeros the copy.
    """
    check_puk(puk)
    _check_pin(new_pin)
    data = _two_blocks(puk, new_pin)
    return CommandApdu(0x00, INS_RESET_RETRY_COUNTER, 0x00, PIN_REFERENCE_APPLICATION, data)


def reset_pin_status(reference: int = PIN_REFERENCE_APPLICATION) -> CommandApdu:
    """VERIFY with P1=FF and no data: the card forgets that the PIN was verified (SP 800-73-4)."""
    return CommandApdu(0x00, INS_VERIFY, VERIFY_RESET_STATUS, reference)


def verify_status(reference: int = PIN_REFERENCE_APPLICATION) -> CommandApdu:
    """Empty VERIFY: 9000 if already verified, else 63Cx with the retries left."""
    return CommandApdu(0x00, INS_VERIFY, 0x00, reference)


def _check_input(algorithm: Algorithm, data: bytes) -> None:
    if algorithm.is_rsa and len(data) != algorithm.block_size:
        raise ValueError(f"{algorithm.name} needs a {algorithm.block_size}-byte block")
    if not algorithm.is_rsa and not 0 < len(data) <= algorithm.block_size:
        raise ValueError(f"{algorithm.name} input must be 1 to {algorithm.block_size} bytes")


def general_authenticate(slot: Slot, algorithm: Algorithm, data: bytes) -> CommandApdu:
    """Sign (ECDSA) or raw-RSA *data* with the key in *slot*: ``7C{82 00, 81 L data}``.

    *data* is the already-padded RSA block or the already-truncated ECDSA input
    (see :mod:`hwgated.piv.signing`). ``transceive`` chains it when over 255 bytes.
    """
    _check_input(algorithm, data)
    template = Tlv(TAG_AUTH_RESPONSE) + Tlv(TAG_AUTH_CHALLENGE, data)
    return CommandApdu(
        0x00,
        INS_GENERAL_AUTHENTICATE,
        int(algorithm),
        int(slot),
        bytes(Tlv(TAG_DYNAMIC_AUTH, template)),
        le=LE_MAX_SHORT,
    )


def ecdh(slot: Slot, algorithm: Algorithm, peer_point: bytes) -> CommandApdu:
    """Key agreement with an uncompressed peer point: ``7C{82 00, 85 L 04‖X‖Y}``."""
    if algorithm.is_rsa:
        raise ValueError("ECDH needs an ECC algorithm")
    if len(peer_point) != 1 + 2 * algorithm.block_size or peer_point[:1] != b"\x04":
        raise ValueError(f"peer point must be an uncompressed {algorithm.name} point")
    template = Tlv(TAG_AUTH_RESPONSE) + Tlv(TAG_AUTH_EXPONENTIATION, peer_point)
    return CommandApdu(
        0x00,
        INS_GENERAL_AUTHENTICATE,
        int(algorithm),
        int(slot),
        bytes(Tlv(TAG_DYNAMIC_AUTH, template)),
        le=LE_MAX_SHORT,
    )


def parse_general_authenticate(resp_data: bytes) -> bytes:
    """The response (tag 82) from ``7C{82 L value}``; raises TlvError when malformed."""
    inner = Tlv.parse_dict(Tlv.unpack(TAG_DYNAMIC_AUTH, resp_data))
    value = inner.get(TAG_AUTH_RESPONSE)
    if not value:
        raise TlvError("GENERAL AUTHENTICATE response lacks tag 82")
    return value
