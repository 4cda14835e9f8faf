"""Typed values that cross the HSM layer's API (and the worker pipe).

They are plain dataclasses and str enums (``wire.py``'s fixed schema lists them),
with no PKCS#11 handles in them: a handle is only meaningful inside the worker process that owns the
session, so nothing above this package ever sees one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum

from hwgated.hsm.keyref import KeyClass, KeyRef

__all__ = [
    "DerivedKey",
    "DiversifyMechanism",
    "KeyAlgorithm",
    "KeyClass",
    "KeyInfo",
    "KeyPairSpec",
    "KeyUsage",
    "SecretKeySpec",
    "SignAlgorithm",
    "WrapMechanism",
]


class SignAlgorithm(StrEnum):
    """What ``sign`` computes; the input is a digest except for HMAC (Cloud KMS model)."""

    ECDSA_SHA256 = "ECDSA_SHA256"
    ECDSA_SHA384 = "ECDSA_SHA384"
    RSA_PKCS1_SHA256 = "RSA_PKCS1_SHA256"
    RSA_PKCS1_SHA384 = "RSA_PKCS1_SHA384"
    RSA_PKCS1_SHA512 = "RSA_PKCS1_SHA512"
    RSA_PSS_SHA256 = "RSA_PSS_SHA256"
    RSA_PSS_SHA384 = "RSA_PSS_SHA384"
    RSA_PSS_SHA512 = "RSA_PSS_SHA512"
    HMAC_SHA256 = "HMAC_SHA256"


class KeyAlgorithm(StrEnum):
    """The PKCS#11 key type, reduced to the ones this layer knows how to use."""

    RSA = "RSA"
    EC = "EC"
    AES = "AES"
    GENERIC_SECRET = "GENERIC_SECRET"
    OTHER = "OTHER"


class KeyUsage(StrEnum):
    """A capability flag of a key (CKA_SIGN, CKA_DERIVE, ...)."""

    SIGN = "sign"
    VERIFY = "verify"
    DERIVE = "derive"
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    WRAP = "wrap"
    UNWRAP = "unwrap"


class KeyPairSpec(StrEnum):
    """Key pairs ``generate_key_pair`` makes."""

    RSA2048 = "RSA2048"
    RSA3072 = "RSA3072"
    RSA4096 = "RSA4096"
    EC_P256 = "EC_P256"
    EC_P384 = "EC_P384"


class SecretKeySpec(StrEnum):
    """Secret keys ``generate_secret_key`` makes (GENERIC_SECRET is 256 bits, for HMAC)."""

    AES128 = "AES128"
    AES256 = "AES256"
    GENERIC_SECRET = "GENERIC_SECRET"


class DiversifyMechanism(StrEnum):
    """Key diversification by encrypting data under a master AES key."""

    AES_ECB = "AES_ECB"  # CKM_AES_ECB_ENCRYPT_DATA
    AES_CBC = "AES_CBC"  # CKM_AES_CBC_ENCRYPT_DATA


class WrapMechanism(StrEnum):
    """How a key is wrapped under another (C_WrapKey / C_UnwrapKey)."""

    AES_KEY_WRAP_PAD = "AES_KEY_WRAP_PAD"  # CKM_AES_KEY_WRAP_PAD, RFC 5649


@dataclass(frozen=True)
class KeyInfo:
    """What ``list_keys`` tells about one key object; never any key material."""

    label: str
    id_hex: str
    key_class: KeyClass
    key_type: KeyAlgorithm
    size_bits: int | None  # RSA modulus / EC field / secret value length
    curve: str | None  # "P-256", "P-384", "P-521" for EC keys
    usages: frozenset[KeyUsage]
    sensitive: bool | None  # None: not applicable (public keys) or unreadable
    extractable: bool | None
    local: bool | None  # generated on the token (CKA_LOCAL)
    token_object: bool = True

    @functools.cached_property
    def ref(self) -> KeyRef:
        """A reference that finds exactly this object (label + id + class); made once per
        description (a KeyRef is immutable), not on every signature that uses it."""
        return KeyRef(
            label=self.label or None,
            id=bytes.fromhex(self.id_hex) if self.id_hex else None,
            key_class=self.key_class,
        )


@dataclass
class DerivedKey:
    """A key derived inside the HSM.

    ``ref`` is set when the key was stored as a token object; a session object is
    destroyed by the worker right after the derivation (its session belongs to one
    worker process only). ``value`` is present only when an extractable key was
    asked for; it is a bytearray so the caller can wipe it (``wipe()``).
    """

    ref: KeyRef | None
    key_length: int  # bytes
    value: bytearray | None = field(default=None)

    def wipe(self) -> None:
        """Overwrite the secret value in place."""
        if self.value is not None:
            self.value[:] = bytes(len(self.value))

    def __repr__(self) -> str:
        shown = "<hidden>" if self.value is not None else "None"
        return f"DerivedKey(ref={self.ref!r}, key_length={self.key_length}, value={shown})"
