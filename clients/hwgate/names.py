"""Spellings users type for protocol values: algorithm names and key references.

The CLI and the library accept the same spellings, so a reference that works
in ``hwgate sign KEY`` works in ``client.sign(REF, ...)``.
"""

from __future__ import annotations

import functools

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from hwgate.v1 import common_pb2, hsm_pb2

SignatureAlgorithmLike = str | int
KeyRefLike = str | hsm_pb2.KeyRef


def kebab(enum: EnumTypeWrapper, value: int, prefix: str) -> str:
    """An enum value in lower kebab case without its prefix (ECDSA_SHA256 -> ecdsa-sha256)."""
    return enum.Name(value).removeprefix(prefix).lower().replace("_", "-")


def from_kebab(enum: EnumTypeWrapper, text: str, prefix: str) -> int:
    """The enum value for a kebab or full name; ValueError listing the choices."""
    return _from_kebab(enum, text, prefix)


# On every sign(): the lookup builds the enum's key list each time, a tenth of a
# coalesced signature's client-side cost. Spellings are few; errors are not cached.
@functools.lru_cache(maxsize=256)
def _from_kebab(enum: EnumTypeWrapper, text: str, prefix: str) -> int:
    name = text.strip().upper().replace("-", "_")
    for candidate in (name, prefix + name):
        valid = candidate in enum.keys()  # noqa: SIM118 (an enum wrapper, not a dict)
        if valid and not candidate.endswith("_UNSPECIFIED"):
            return int(enum.Value(candidate))
    choices = ", ".join(kebab_choices(enum, prefix))
    raise ValueError(f"unknown value {text!r}; choose one of: {choices}")


def kebab_choices(enum: EnumTypeWrapper, prefix: str) -> list[str]:
    return [
        kebab(enum, v, prefix) for v in enum.values() if not enum.Name(v).endswith("_UNSPECIFIED")
    ]


SIG_PREFIX = "SIGNATURE_ALGORITHM_"
KEY_PREFIX = "KEY_ALGORITHM_"


def signature_algorithm(value: SignatureAlgorithmLike) -> int:
    """SignatureAlgorithm from "ecdsa-sha256", "SIGNATURE_ALGORITHM_ECDSA_SHA256" or the number."""
    if isinstance(value, int):
        return value
    return from_kebab(common_pb2.SignatureAlgorithm, value, SIG_PREFIX)


def key_algorithm(value: str | int) -> int:
    """KeyAlgorithm from "ec-p256", "rsa-2048", ... or the number."""
    if isinstance(value, int):
        return value
    return from_kebab(common_pb2.KeyAlgorithm, value, KEY_PREFIX)


def key_ref(ref: KeyRefLike, token: str = "") -> hsm_pb2.KeyRef:
    """A KeyRef from a label, an RFC 7512 ``pkcs11:`` URI, ``id:HEX``, or a KeyRef.

    ``TOKEN/LABEL`` is not parsed (labels may hold slashes); pass *token* instead.
    """
    if isinstance(ref, hsm_pb2.KeyRef):
        return ref
    if ref.startswith("pkcs11:"):
        return hsm_pb2.KeyRef(token=token, uri=ref)
    if ref.startswith("id:"):
        return hsm_pb2.KeyRef(token=token, id=bytes.fromhex(ref[3:]))
    return hsm_pb2.KeyRef(token=token, label=ref)
