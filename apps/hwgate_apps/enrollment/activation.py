"""One-time activation codes, computed inside the HSM.

Choice: HMAC-SHA256 with ``hmac-key`` (HsmService.Sign) over the enrollment
id and the code's issue number, rather than Derive from ``activation-master``.
HMAC is one RPC that returns only a MAC: no derived key object is created in
the token, and no key value has to be made extractable and allowed out by
policy (Derive would need both to show the code). The code is never stored:
the server recomputes it in the HSM to check it, so a stolen database holds
no codes, and without the HSM key nobody can mint one.

Rendering: 8 characters from a 32-symbol alphabet without 0/O/1/I (40 bits),
within SP 800-157's 6-8 ``[0-9A-Za-z]`` activation secret.
"""

from __future__ import annotations

import hmac
from typing import Protocol

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
_DOMAIN = b"hwgate-apps/activation-code/v1\x00"


class MacSigner(Protocol):
    """What the code needs from hwgate (``hwgate.Client`` is one)."""

    def sign(self, key: str, algorithm: str, *, digest: bytes = b"", data: bytes = b"") -> bytes:
        """HsmService.Sign."""
        ...


def mac_input(enrollment_id: str, issue: int) -> bytes:
    """The HMAC input: a domain label, the enrollment id and which issue of its code."""
    return _DOMAIN + enrollment_id.encode() + b"\x00" + str(issue).encode()


def render(mac: bytes) -> str:
    """The first 40 bits of the MAC as 8 symbols of ALPHABET."""
    number = int.from_bytes(mac[:5], "big")
    return "".join(ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(CODE_LENGTH)))


def activation_code(hsm: MacSigner, key: str, enrollment_id: str, issue: int) -> str:
    """The code for this enrollment and issue, computed by the HSM."""
    mac = hsm.sign(key, "hmac-sha256", data=mac_input(enrollment_id, issue))
    return render(mac)


def normalize(code: str) -> str:
    """What a person types: spaces and dashes dropped, upper case."""
    return code.replace(" ", "").replace("-", "").upper()


def codes_equal(expected: str, given: str) -> bool:
    """Constant-time comparison (on bytes, so non-ASCII input cannot raise)."""
    return hmac.compare_digest(expected.encode(), normalize(given).encode())
