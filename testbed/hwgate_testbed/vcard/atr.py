"""The virtual card's Answer-To-Reset.

A plain contact T=1 ATR with our own historical bytes. OpenSC 0.23 refines the
card type from ATR tables (``3B 80 80 01 01`` makes it a PIVKey with EC turned
off; ``3B 8x 80 01`` sets its contactless flag; "Yubikey"/"PIVKEY"/F9+AID in the
historical bytes switch on vendor paths), so none of those patterns appear here.
FACTS (OpenSC 0.26.1, Debian 13): the same ATR still matches none of its tables;
it reads the card as PIV and offers ECDSA (tests/testbed/test_opensc.py passes
in the Debian 13 container, tests/systemd/test_debian13_suite.py).
"""

from __future__ import annotations

from functools import reduce

# TD1 = 81 (T=1, TD2 follows), TD2 = 31 (TA3, TB3 follow, T=1), TA3 = FE (IFSC 254),
# TB3 = 45 (BWI 4, CWI 5).
_INTERFACE = bytes([0x81, 0x31, 0xFE, 0x45])
# Category 80 (compact-TLV), tag 5 (card issuer's data) with our own name.
HISTORICAL_BYTES = bytes([0x80, 0x5A]) + b"hwgatevPIV"


def build_atr(historical: bytes = HISTORICAL_BYTES) -> bytes:
    """TS, T0, interface bytes, historical bytes and TCK (XOR of T0..last)."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x80 | len(historical)]) + _INTERFACE + historical
    tck = reduce(lambda a, b: a ^ b, body, 0)
    return b"\x3b" + body + bytes([tck])


ATR = build_atr()


def build_t0_atr(historical: bytes = HISTORICAL_BYTES) -> bytes:
    """TS, T0 without TD1 (so T=0 is the only protocol, ISO/IEC 7816-3 §8.2.3), the
    historical bytes; no TCK, which an ATR offering only T=0 does not carry."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    return b"\x3b" + bytes([len(historical)]) + historical


T0_ATR = build_t0_atr()


def atr_for(t0_only: bool) -> bytes:
    """The ATR of a card that offers T=1 (the default) or T=0 alone."""
    return T0_ATR if t0_only else ATR
