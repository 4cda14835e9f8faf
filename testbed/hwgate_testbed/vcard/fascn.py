"""The card's own FASC-N encoder (TIG SCEPACS v2.3 §6; SP 800-73-4 part 1, CHUID tag 30).

Kept apart from the daemon's FASC-N decoder on purpose: the virtual card is what
tests that decoder, so the two must not share code (a shared bug would cancel out).

A FASC-N is 40 characters of 5 bits = 200 bits = 25 bytes::

    SS  AC(4) FS  SC(4) FS  CN(6) FS  CS(1) FS  ICI(1) FS  PI(10) OC(1) OI(4) POA(1)  ES  LRC

Each character is a 4-bit code sent least significant bit first, followed by an
odd-parity bit (so every 5-bit group holds an odd number of ones). Digits are
their own codes; Start Sentinel is 1011 (0xB), Field Separator 1101 (0xD), End
Sentinel 1111 (0xF). The LRC is the XOR of the 4-bit codes of all 39 characters
before it, with its own parity bit. The bit stream fills the 25 bytes first bit
in the most significant position.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

FASCN_BYTES = 25
START_SENTINEL = 0xB
FIELD_SEPARATOR = 0xD
END_SENTINEL = 0xF

# (field, digits, followed by a field separator), in card order.
FIELDS: tuple[tuple[str, int, bool], ...] = (
    ("agency_code", 4, True),
    ("system_code", 4, True),
    ("credential_number", 6, True),
    ("cs", 1, True),
    ("ici", 1, True),
    ("pi", 10, False),
    ("oc", 1, False),
    ("oi", 4, False),
    ("poa", 1, False),
)


class FascnError(ValueError):
    """Fields or bytes that do not make a FASC-N."""


def character_bits(code: int) -> str:
    """The 5 transmitted bits of one 4-bit code: b1 (LSB) .. b4, then odd parity."""
    data = "".join("1" if code >> i & 1 else "0" for i in range(4))
    parity = "0" if data.count("1") % 2 else "1"
    return data + parity


@dataclass(frozen=True, eq=False)
class Fascn:
    """The nine numeric fields; each a string of exactly its number of digits."""

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
        for name, digits, _ in FIELDS:
            value = getattr(self, name)
            ok = isinstance(value, str) and len(value) == digits
            if not (ok and value.isascii() and value.isdecimal()):
                raise FascnError(f"{name} must be {digits} ASCII digits, not {value!r}")

    def codes(self) -> list[int]:
        """The 40 4-bit character codes, LRC last."""
        out = [START_SENTINEL]
        for name, _, separated in FIELDS:
            out.extend(int(ch) for ch in getattr(self, name))
            if separated:
                out.append(FIELD_SEPARATOR)
        out.append(END_SENTINEL)
        lrc = 0
        for code in out:
            lrc ^= code
        out.append(lrc)
        return out

    def encode(self) -> bytes:
        """The 25 bytes that go into CHUID tag 30 and the certificates' FASC-N SAN."""
        bits = "".join(character_bits(code) for code in self.codes())
        return int(bits, 2).to_bytes(FASCN_BYTES, "big")

    @classmethod
    def decode(cls, data: bytes) -> Fascn:
        """Parse 25 bytes, checking every parity bit, separator, sentinel and the LRC."""
        if len(data) != FASCN_BYTES:
            raise FascnError(f"a FASC-N is {FASCN_BYTES} bytes, got {len(data)}")
        bits = format(int.from_bytes(data, "big"), f"0{8 * FASCN_BYTES}b")
        groups = [bits[i : i + 5] for i in range(0, len(bits), 5)]
        codes = []
        for i, group in enumerate(groups):
            if group.count("1") % 2 != 1:
                raise FascnError(f"character {i}: parity error")
            codes.append(int(group[3::-1], 2))
        rebuilt = _from_codes(codes)
        if rebuilt.codes() != codes:
            raise FascnError("separators, sentinels or LRC do not match")
        return rebuilt

    def __eq__(self, other: object) -> bool:
        """Equal to any FASC-N-shaped object with the same nine fields.

        Duck-typed so a FASC-N the daemon decoded from this card compares equal to
        the one the card was made with, without either side importing the other.
        """
        try:
            return all(getattr(self, n) == getattr(other, n) for n, _, _ in FIELDS)
        except AttributeError:
            return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n, _, _ in FIELDS))

    def __str__(self) -> str:
        return "-".join(getattr(self, f.name) for f in fields(self))


def _from_codes(codes: list[int]) -> Fascn:
    """Fields from the digit positions of 40 codes (framing is checked by the caller)."""
    values: dict[str, str] = {}
    pos = 1  # after the start sentinel
    for name, digits, separated in FIELDS:
        chunk = codes[pos : pos + digits]
        if any(code > 9 for code in chunk):
            raise FascnError(f"{name}: not a digit")
        values[name] = "".join(str(code) for code in chunk)
        pos += digits + (1 if separated else 0)
    return Fascn(**values)
