"""RFC 8628 user codes: what a person reads off the phone and types at the kiosk.

Alphabet and length follow RFC 8628 §6.1 and §5.1: case-insensitive A-Z with no
digits and no vowels (the base-20 set ``BCDFGHJKLMNPQRSTVWXZ``), so nothing is
confused (0/O, 1/I) and no word is spelled by chance; 8 characters, about 34.5
bits, shown as ``XXXX-XXXX``. That entropy alone is small: the server rate-limits
attempts (§5.1) and a code works once. Input is compared after normalization:
case, dashes, spaces and other separators do not matter.

The code is never stored: the server keeps an HMAC of it, computed in the HSM
(the same ``hmac-key`` as activation codes, under another domain label), so a
stolen database yields no codes and cannot be brute-forced offline.
"""

from __future__ import annotations

import secrets

ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
LENGTH = 8
GROUP = 4
MAX_INPUT = 64  # what a person may type, separators included
_DOMAIN = b"hwgate-apps/device-user-code/v1\x00"
_ALLOWED = frozenset(ALPHABET)


def generate() -> str:
    """A fresh code in its canonical form (8 letters, no dash); uniform over the alphabet."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def display(code: str) -> str:
    """``WDJBMJHT`` -> ``WDJB-MJHT`` (how the phone and the kiosk show it)."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def normalize(text: str) -> str | None:
    """The canonical code in *text*, or None when it cannot be one.

    Separators (anything that is not a letter or digit) are dropped and the
    rest upper-cased; only ASCII counts, so no Unicode case mapping (``ß`` ->
    ``SS``) can turn junk into a code.
    """
    if len(text) > MAX_INPUT or not text.isascii():
        return None
    kept = "".join(ch for ch in text if ch.isalnum()).upper()
    if len(kept) != LENGTH or not set(kept) <= _ALLOWED:
        return None
    return kept


def mac_input(code: str) -> bytes:
    """What the HSM MACs for a canonical code (the stored lookup key)."""
    return _DOMAIN + code.encode("ascii")
