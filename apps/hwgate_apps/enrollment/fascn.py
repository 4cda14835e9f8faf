"""Decode a FASC-N (25 bytes, 5-bit BCD with odd parity) to its 32 digits.

The PIV Authentication certificate carries the FASC-N in a SAN otherName
(2.16.840.1.101.3.6.6) as raw bytes; people and databases know it as the
32-digit string (agency 4, system 4, credential 6, CS, ICI, PI 10, OC, OI 4,
POA), so the server records and looks it up in that form.
"""

from __future__ import annotations

FASCN_BYTES = 25
_CHARS = 40  # 200 bits / 5
_END_SENTINEL = 0b1111


class FascnError(ValueError):
    """The bytes are not a FASC-N."""


def _characters(raw: bytes) -> list[int]:
    bits = "".join(f"{byte:08b}" for byte in raw)
    chars = []
    for i in range(_CHARS):
        group = bits[5 * i : 5 * i + 5]
        if group.count("1") % 2 != 1:
            raise FascnError(f"parity error in character {i}")
        # b1 is the least significant bit and is sent first.
        chars.append(sum(int(bit) << n for n, bit in enumerate(group[:4])))
    return chars


def decode_fascn(raw: bytes) -> str:
    """The 32 FASC-N digits; FascnError if *raw* is not a well-formed FASC-N."""
    if len(raw) != FASCN_BYTES:
        raise FascnError(f"a FASC-N is {FASCN_BYTES} bytes, not {len(raw)}")
    chars = _characters(raw)
    if _END_SENTINEL not in chars:
        raise FascnError("no end sentinel")
    digits = [c for c in chars[: chars.index(_END_SENTINEL)] if c < 10]
    if len(digits) != 32:
        raise FascnError(f"expected 32 digits, found {len(digits)}")
    return "".join(str(d) for d in digits)
