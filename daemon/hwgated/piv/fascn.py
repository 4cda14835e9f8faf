"""FASC-N: the Federal Agency Smart Credential Number inside the CHUID (tag 30).

40 characters of 5 bits (4 data bits LSB first, then an odd-parity bit), packed
MSB first into 25 bytes. The layout is fixed::

    SS AC(4) FS SC(4) FS CN(6) FS CS(1) FS ICI(1) FS PI(10) OC(1) OI(4) POA(1) ES LRC

The LRC is the XOR of the 39 preceding 4-bit values, with its own parity bit.
Decoding checks every parity bit, every separator and the LRC, because a FASC-N
names a person: a misread one must be refused, not shown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import PivParseError

FASCN_LENGTH = 25
_CHARS = 40
_SS, _FS, _ES = 0xB, 0xD, 0xF

# (field name, digits); a separator follows the first five fields.
_LAYOUT: tuple[tuple[str, int], ...] = (
    ("agency_code", 4),
    ("system_code", 4),
    ("credential_number", 6),
    ("cs", 1),
    ("ici", 1),
    ("pi", 10),
    ("oc", 1),
    ("oi", 4),
    ("poa", 1),
)
_SEPARATED = 5  # agency_code..ici are each followed by FS


class FascnError(PivParseError):
    """Bytes or fields that are not a valid FASC-N."""


def _code(value: int) -> int:
    """5-bit character: 4 data bits LSB first, then odd parity; first bit is the MSB."""
    bits = [(value >> i) & 1 for i in range(4)]
    parity = 1 - sum(bits) % 2
    code = 0
    for bit in [*bits, parity]:
        code = (code << 1) | bit
    return code


def _value(code: int) -> int:
    """Inverse of :func:`_code`; raises FascnError on a parity error."""
    if bin(code).count("1") % 2 != 1:
        raise FascnError(f"parity error in character 0b{code:05b}")
    bits = [(code >> (4 - i)) & 1 for i in range(4)]
    return sum(bit << i for i, bit in enumerate(bits))


@dataclass(frozen=True)
class Fascn:
    """The nine FASC-N fields as digit strings (leading zeros are significant)."""

    agency_code: str
    system_code: str
    credential_number: str
    cs: str
    ici: str
    pi: str
    oc: str
    oi: str
    poa: str

    def __post_init__(self) -> None:
        for name, width in _LAYOUT:
            value = getattr(self, name)
            if len(value) != width or not (value.isascii() and value.isdigit()):
                raise FascnError(f"{name} must be {width} ASCII digits")

    def _values(self) -> list[int]:
        """The 39 4-bit values before the LRC."""
        values = [_SS]
        for index, (name, _) in enumerate(_LAYOUT):
            values += [int(c) for c in getattr(self, name)]
            if index < _SEPARATED:
                values.append(_FS)
        values.append(_ES)
        return values

    def encode(self) -> bytes:
        """The 25-byte packed form (CHUID tag 30)."""
        values = self._values()
        lrc = 0
        for value in values:
            lrc ^= value
        packed = 0
        for value in [*values, lrc]:
            packed = (packed << 5) | _code(value)
        return packed.to_bytes(FASCN_LENGTH, "big")

    @classmethod
    def decode(cls, data: bytes) -> Fascn:
        """Parse 25 packed bytes; raises FascnError on any inconsistency."""
        if len(data) != FASCN_LENGTH:
            raise FascnError(f"FASC-N must be {FASCN_LENGTH} bytes, got {len(data)}")
        packed = int.from_bytes(bytes(data), "big")
        codes = [(packed >> (5 * (_CHARS - 1 - i))) & 0x1F for i in range(_CHARS)]
        values = [_value(code) for code in codes]
        lrc = 0
        for value in values[:-1]:
            lrc ^= value
        if lrc != values[-1]:
            raise FascnError("LRC mismatch")
        return cls(**_split_fields(values[:-1]))

    def __str__(self) -> str:
        """The conventional dashed form, e.g. ``0032-0001-092446-0-1-1112223333-1-1223-2``."""
        return "-".join(getattr(self, f.name) for f in fields(self))


def _expect(actual: int, wanted: int, what: str) -> None:
    if actual != wanted:
        raise FascnError(f"expected {what} at this position, got 0x{actual:X}")


def _split_fields(values: list[int]) -> dict[str, str]:
    """Check separators in the 39 values and cut out the digit fields."""
    _expect(values[0], _SS, "start sentinel")
    pos = 1
    out: dict[str, str] = {}
    for index, (name, width) in enumerate(_LAYOUT):
        digits = values[pos : pos + width]
        if any(d > 9 for d in digits):
            raise FascnError(f"non-digit in {name}")
        out[name] = "".join(str(d) for d in digits)
        pos += width
        if index < _SEPARATED:
            _expect(values[pos], _FS, "field separator")
            pos += 1
    _expect(values[pos], _ES, "end sentinel")
    return out
