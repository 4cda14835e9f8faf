"""Key slots and algorithms (SP 800-73-4 part 1 §3, SP 800-78-4 table 6-2)."""

from __future__ import annotations

from enum import Enum, IntEnum


class PinPolicy(Enum):
    """When the card wants a PIN before using a slot's private key (contact interface)."""

    NEVER = "never"
    ONCE = "once"  # one VERIFY per session (card reset / reselect of another AID clears it)
    ALWAYS = "always"  # VERIFY immediately before each use (9C)


class Slot(IntEnum):
    """PIV key references as sent in P2 of GENERAL AUTHENTICATE / GENERATE."""

    AUTHENTICATION = 0x9A
    CARD_MANAGEMENT = 0x9B
    SIGNATURE = 0x9C
    KEY_MANAGEMENT = 0x9D
    CARD_AUTH = 0x9E

    @property
    def certificate_tag(self) -> int | None:
        """GET DATA tag of the slot's X.509 certificate object; 9B (symmetric) has none."""
        return _CERT_TAGS.get(self)

    @property
    def pin_policy(self) -> PinPolicy:
        """Default PIN policy of the slot; 9B is authenticated by challenge, not PIN."""
        return _PIN_POLICIES[self]


_CERT_TAGS = {
    Slot.AUTHENTICATION: 0x5FC105,
    Slot.SIGNATURE: 0x5FC10A,
    Slot.KEY_MANAGEMENT: 0x5FC10B,
    Slot.CARD_AUTH: 0x5FC101,
}

_PIN_POLICIES = {
    Slot.AUTHENTICATION: PinPolicy.ONCE,
    Slot.CARD_MANAGEMENT: PinPolicy.NEVER,
    Slot.SIGNATURE: PinPolicy.ALWAYS,
    Slot.KEY_MANAGEMENT: PinPolicy.ONCE,
    Slot.CARD_AUTH: PinPolicy.NEVER,
}


class Algorithm(IntEnum):
    """Asymmetric algorithm identifiers (P1 of GENERAL AUTHENTICATE)."""

    RSA1024 = 0x06
    RSA2048 = 0x07
    ECCP256 = 0x11
    ECCP384 = 0x14

    @property
    def is_rsa(self) -> bool:
        return self in (Algorithm.RSA1024, Algorithm.RSA2048)

    @property
    def key_bits(self) -> int:
        """Modulus size for RSA, field size for ECC."""
        return _KEY_BITS[self]

    @property
    def block_size(self) -> int:
        """Bytes the card takes in tag 81: a full RSA block, or the field size for ECDSA."""
        return self.key_bits // 8


KeyType = Algorithm  # yubikit's name for the same thing

_KEY_BITS = {
    Algorithm.RSA1024: 1024,
    Algorithm.RSA2048: 2048,
    Algorithm.ECCP256: 256,
    Algorithm.ECCP384: 384,
}
