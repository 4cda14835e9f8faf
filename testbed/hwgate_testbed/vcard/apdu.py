"""Card-side command APDU parsing (ISO/IEC 7816-4 cases 1-4, short and extended).

The virtual card receives raw bytes from vpcd and must answer every one of them
with a status word, so parsing never raises: a malformed command comes back as
``None`` and the applet answers 6700.
"""

from __future__ import annotations

from dataclasses import dataclass

SW_OK = 0x9000
SW_VERIFY_FAILED = 0x63C0  # | retries left
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTH_BLOCKED = 0x6983
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNC_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_INCORRECT_P1P2 = 0x6A86
SW_REF_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_BYTES_REMAINING = 0x6100  # | min(remaining, 256) & 0xFF
SW_WRONG_LE = 0x6C00  # | the exact number of bytes available

CLA_CHAIN = 0x10  # "more command data follows" bit of the interindustry CLA


@dataclass(frozen=True)
class CommandApdu:
    """One parsed command; ``ne`` is the maximum response length (0 = none expected)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    ne: int
    extended: bool

    @property
    def chained(self) -> bool:
        """True when this is a non-final part of a command chain."""
        return bool(self.cla & CLA_CHAIN)


def _short_le(byte: int) -> int:
    return byte or 256


def _extended_le(two: bytes) -> int:
    return int.from_bytes(two, "big") or 65536


def parse_command(raw: bytes) -> CommandApdu | None:
    """Parse *raw* into a CommandApdu, or return None if its length fits no case."""
    if len(raw) < 4:
        return None
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    body = raw[4:]
    data, ne, extended = b"", 0, False
    if not body:  # case 1
        pass
    elif len(body) == 1:  # case 2 short
        ne = _short_le(body[0])
    elif body[0] != 0:  # case 3/4 short
        lc = body[0]
        if len(body) == 1 + lc:
            data = body[1:]
        elif len(body) == 2 + lc:
            data, ne = body[1:-1], _short_le(body[-1])
        else:
            return None
    else:  # extended: 00 then two length bytes
        extended = True
        if len(body) == 3:  # case 2 extended
            ne = _extended_le(body[1:3])
        else:
            lc = int.from_bytes(body[1:3], "big")
            if lc == 0:
                return None
            if len(body) == 3 + lc:
                data = body[3:]
            elif len(body) == 5 + lc:
                data, ne = body[3:-2], _extended_le(body[-2:])
            else:
                return None
    return CommandApdu(cla, ins, p1, p2, bytes(data), ne, extended)


def sw_bytes(sw: int) -> bytes:
    """The two status bytes."""
    return sw.to_bytes(2, "big")
