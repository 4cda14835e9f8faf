"""ISO/IEC 7816-4 APDUs: strict encode/decode and the T=0/T=1 exchange rules.

``CommandApdu.decode`` is the gatekeeper for raw APDUs that clients send through
the daemon's Transmit RPC, so it accepts exactly the four ISO cases in short
and extended form and nothing else. ``transceive`` is the one place that knows
about command chaining, ``61xx`` (GET RESPONSE) and ``6Cxx`` (wrong Le); every
loop in it is bounded so a misbehaving card cannot hang a reader worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .errors import PivParseError

Transmit = Callable[[bytes], bytes]
"""Send one encoded command APDU, return the raw response (data ‖ SW1 SW2)."""

CLA_CHAINING = 0x10
INS_GET_RESPONSE = 0xC0
SW1_MORE_DATA = 0x61
SW1_WRONG_LE = 0x6C

SHORT_MAX_DATA = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_DATA = 65535
EXTENDED_MAX_LE = 65536

MAX_RESPONSE_ROUNDS = 64
MAX_RESPONSE_BYTES = 65536


class ApduError(PivParseError):
    """An APDU whose lengths are inconsistent, or a card that breaks the exchange rules."""


@dataclass(frozen=True)
class CommandApdu:
    """A command APDU.

    ``le`` is Ne, the number of response bytes expected: None when absent, else
    1..65536 (256 encodes as short ``00``, 65536 as extended ``00 00``).
    ``extended`` forces extended length even when short would fit, so that
    ``decode(b).encode() == b`` holds for every valid APDU. ``data`` may be a
    bytearray so secrets (a PIN) can be wiped with :meth:`wipe`.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes | bytearray = field(default=b"", repr=False)  # may be a PIN: never in a repr
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ApduError(f"{name} out of range")
        if len(self.data) > EXTENDED_MAX_DATA:
            raise ApduError(f"data too long ({len(self.data)} bytes)")
        if self.le is not None and not 1 <= self.le <= EXTENDED_MAX_LE:
            raise ApduError(f"Le out of range ({self.le})")

    @property
    def is_extended(self) -> bool:
        """True when this APDU encodes with extended lengths."""
        has_body = bool(self.data) or self.le is not None  # case 1 has no length to extend
        return (
            (self.extended and has_body)
            or len(self.data) > SHORT_MAX_DATA
            or (self.le is not None and self.le > SHORT_MAX_LE)
        )

    def encode(self) -> bytes:
        """Header ‖ [Lc ‖ data] ‖ [Le], short form unless something needs extended."""
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        ext = self.is_extended
        if self.data:
            out += (
                (b"\x00" + len(self.data).to_bytes(2, "big")) if ext else bytes((len(self.data),))
            )
            out += self.data
        if self.le is not None:
            if ext:
                prefix = b"" if self.data else b"\x00"
                out += prefix + (self.le % EXTENDED_MAX_LE).to_bytes(2, "big")
            else:
                out.append(self.le % SHORT_MAX_LE)
        return bytes(out)

    def wipe(self) -> None:
        """Zero ``data`` in place when it is a bytearray (PIN-carrying commands)."""
        if isinstance(self.data, bytearray):
            self.data[:] = bytes(len(self.data))

    @classmethod
    def decode(cls, apdu: bytes) -> CommandApdu:
        """Parse one APDU of ISO case 1, 2, 3 or 4, short or extended; raise ApduError."""
        apdu = bytes(apdu)
        if len(apdu) < 4:
            raise ApduError("APDU shorter than its 4-byte header")
        cla, ins, p1, p2 = apdu[:4]
        data, le, extended = _decode_body(apdu[4:])
        return cls(cla, ins, p1, p2, data, le, extended)


def _decode_body(body: bytes) -> tuple[bytes, int | None, bool]:
    """(data, Ne, extended) from everything after the header."""
    n = len(body)
    if n == 0:
        return b"", None, False  # case 1
    if n == 1:
        return b"", body[0] or SHORT_MAX_LE, False  # case 2S
    if body[0] != 0:
        lc = body[0]
        if n == 1 + lc:
            return body[1:], None, False  # case 3S
        if n == 2 + lc:
            return body[1:-1], body[-1] or SHORT_MAX_LE, False  # case 4S
        raise ApduError(f"short Lc {lc} does not match body of {n} bytes")
    return _decode_extended(body)


def _decode_extended(body: bytes) -> tuple[bytes, int | None, bool]:
    n = len(body)
    if n < 3:
        raise ApduError("truncated extended length")
    value = int.from_bytes(body[1:3], "big")
    if n == 3:
        return b"", value or EXTENDED_MAX_LE, True  # case 2E
    if value == 0:
        raise ApduError("extended Lc of zero")
    if n == 3 + value:
        return body[3:], None, True  # case 3E
    if n == 5 + value:
        le = int.from_bytes(body[-2:], "big")
        return body[3:-2], le or EXTENDED_MAX_LE, True  # case 4E
    raise ApduError(f"extended Lc {value} does not match body of {n} bytes")


@dataclass(frozen=True)
class ResponseApdu:
    """A response: data and the 16-bit status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @classmethod
    def parse(cls, response: bytes) -> ResponseApdu:
        """Split data ‖ SW1 SW2; a response without a status word is an ApduError."""
        if len(response) < 2:
            raise ApduError(f"response of {len(response)} bytes has no status word")
        return cls(bytes(response[:-2]), int.from_bytes(response[-2:], "big"))

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")


def split_for_chaining(cmd: CommandApdu, max_data: int = SHORT_MAX_DATA) -> list[CommandApdu]:
    """Cut *cmd* into command-chaining pieces of at most *max_data* bytes each.

    All but the last carry CLA | 0x10 and no Le; the last keeps CLA and Le.
    """
    if max_data < 1:
        raise ValueError("max_data must be positive")
    data = cmd.data
    if len(data) <= max_data:
        return [cmd]
    pieces = [
        replace(cmd, cla=cmd.cla | CLA_CHAINING, data=data[i : i + max_data], le=None)
        for i in range(0, len(data) - max_data, max_data)
    ]
    last_start = len(pieces) * max_data
    pieces.append(replace(cmd, data=data[last_start:]))
    return pieces


def get_response(length: int) -> CommandApdu:
    """GET RESPONSE for the ``xx`` of a ``61xx`` (00 means 256)."""
    return CommandApdu(0x00, INS_GET_RESPONSE, 0x00, 0x00, le=length or SHORT_MAX_LE)


def transceive(transmit: Transmit, cmd: CommandApdu) -> ResponseApdu:
    """Send *cmd* with chaining, then collect the answer through 61xx / 6Cxx.

    Unless ``cmd.extended`` is set, everything goes out as short APDUs: data over
    255 bytes is chained and an Le over 256 becomes 256 (61xx fetches the rest).

    A non-9000 answer to a non-final chained piece ends the exchange and is
    returned as is. Raises ApduError when the card breaks the rules (no status
    word, more than MAX_RESPONSE_ROUNDS rounds, more than MAX_RESPONSE_BYTES).
    """
    if cmd.extended:
        pieces = [cmd]  # the caller asked for one extended APDU: no chaining
    else:
        if cmd.le is not None and cmd.le > SHORT_MAX_LE:
            # Short APDUs only: ask for 256 and let 61xx bring the rest.
            cmd = replace(cmd, le=SHORT_MAX_LE)
        pieces = split_for_chaining(cmd)
    for piece in pieces[:-1]:
        resp = ResponseApdu.parse(transmit(piece.encode()))
        if resp.sw != 0x9000:
            return resp
    return _collect(transmit, pieces[-1])


def _collect(transmit: Transmit, cmd: CommandApdu) -> ResponseApdu:
    """Send the final command and follow 61xx / 6Cxx, bounded."""
    collected = bytearray()
    current = cmd
    for _ in range(MAX_RESPONSE_ROUNDS):
        resp = ResponseApdu.parse(transmit(current.encode()))
        if resp.sw1 == SW1_WRONG_LE:
            current = replace(current, le=resp.sw2 or SHORT_MAX_LE, extended=False)
            continue
        collected += resp.data
        if len(collected) > MAX_RESPONSE_BYTES:
            raise ApduError(f"response longer than {MAX_RESPONSE_BYTES} bytes")
        if resp.sw1 != SW1_MORE_DATA:
            return ResponseApdu(bytes(collected), resp.sw)
        current = get_response(resp.sw2)
    raise ApduError(f"card still had data after {MAX_RESPONSE_ROUNDS} rounds")
