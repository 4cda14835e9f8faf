"""hwgate.v1 HSM messages <-> the HSM layer's typed values.

Pure translation, no I/O and no policy: enum names are mapped by name (the
proto enums are the HSM layer's names with a prefix), so a value added on one
side only fails loudly here instead of being silently misread.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import cast

from hwgate.v1 import common_pb2, hsm_pb2
from hwgated import errors
from hwgated.hsm import (
    DiversifyMechanism,
    KeyAlgorithm,
    KeyClass,
    KeyInfo,
    KeyPairSpec,
    KeyRef,
    KeyUsage,
    SecretKeySpec,
    SignAlgorithm,
)

_SIGN_PREFIX = "SIGNATURE_ALGORITHM_"

# Bounds on a caller's key reference. The HSM layer remembers references it has
# seen (the pool's describe cache, the worker wire's encodings, up to 1024 and 256
# of them), so without a size bound one caller could pin memory with a few requests:
# 300 Sign calls naming one key by a URI carrying a 200 kB ``serial`` kept 66 MB in
# the daemon and 100 MB in a worker after the load stopped (issue 25). Real labels
# and CKA_IDs are far shorter; a URI gets room for a percent-encoded label and the
# token attributes.
MAX_LABEL_LENGTH = 1024  # characters
MAX_ID_BYTES = 256
MAX_URI_LENGTH = 4096  # characters

_KEY_CLASS = {
    KeyClass.PRIVATE: hsm_pb2.KEY_CLASS_KEY_PAIR,
    KeyClass.SECRET: hsm_pb2.KEY_CLASS_SECRET_KEY,
    KeyClass.PUBLIC: hsm_pb2.KEY_CLASS_PUBLIC_KEY,
}
_USAGE_TO_PB: dict[KeyUsage, hsm_pb2.KeyUsage] = {
    u: cast("hsm_pb2.KeyUsage", hsm_pb2.KeyUsage.Value(f"KEY_USAGE_{u.name}")) for u in KeyUsage
}
_USAGE_FROM_PB: dict[int, KeyUsage] = {v: k for k, v in _USAGE_TO_PB.items()}
_KEY_PAIRS: dict[int, KeyPairSpec] = {
    common_pb2.KEY_ALGORITHM_RSA_2048: KeyPairSpec.RSA2048,
    common_pb2.KEY_ALGORITHM_RSA_3072: KeyPairSpec.RSA3072,
    common_pb2.KEY_ALGORITHM_RSA_4096: KeyPairSpec.RSA4096,
    common_pb2.KEY_ALGORITHM_EC_P256: KeyPairSpec.EC_P256,
    common_pb2.KEY_ALGORITHM_EC_P384: KeyPairSpec.EC_P384,
}
_SECRETS: dict[int, SecretKeySpec] = {
    common_pb2.KEY_ALGORITHM_AES_128: SecretKeySpec.AES128,
    common_pb2.KEY_ALGORITHM_AES_256: SecretKeySpec.AES256,
    common_pb2.KEY_ALGORITHM_GENERIC_SECRET: SecretKeySpec.GENERIC_SECRET,
}
_DIVERSIFY: dict[str, DiversifyMechanism] = {
    "aes_ecb_encrypt_data": DiversifyMechanism.AES_ECB,
    "aes_cbc_encrypt_data": DiversifyMechanism.AES_CBC,
}
_RSA_SIZES = {
    1024: common_pb2.KEY_ALGORITHM_RSA_1024,
    2048: common_pb2.KEY_ALGORITHM_RSA_2048,
    3072: common_pb2.KEY_ALGORITHM_RSA_3072,
    4096: common_pb2.KEY_ALGORITHM_RSA_4096,
}
_CURVES = {"P-256": common_pb2.KEY_ALGORITHM_EC_P256, "P-384": common_pb2.KEY_ALGORITHM_EC_P384}
_AES_SIZES = {128: common_pb2.KEY_ALGORITHM_AES_128, 256: common_pb2.KEY_ALGORITHM_AES_256}
DERIVED_KEY_LENGTHS = {
    common_pb2.KEY_ALGORITHM_AES_128: 16,
    common_pb2.KEY_ALGORITHM_AES_256: 32,
}


def sign_algorithm(value: int, field: str = "algorithm") -> SignAlgorithm:
    """The HSM layer's SignAlgorithm for a proto enum value; UNSPECIFIED/unknown refused."""
    try:
        name = common_pb2.SignatureAlgorithm.Name(value)
    except ValueError:
        name = ""
    if not name or name.endswith("UNSPECIFIED"):
        raise errors.InvalidArgument(f"{field} must be set", field=field)
    return SignAlgorithm(name.removeprefix(_SIGN_PREFIX))


def key_ref(ref: hsm_pb2.KeyRef, field: str = "key") -> KeyRef:
    """The reference's selector as the HSM layer's KeyRef (the token is picked elsewhere)."""
    which = ref.WhichOneof("selector")
    if which == "label" and ref.label:
        _bounded(ref.label, MAX_LABEL_LENGTH, f"{field}.label", "characters")
        return KeyRef(label=ref.label)
    if which == "id" and ref.id:
        _bounded(ref.id, MAX_ID_BYTES, f"{field}.id", "bytes")
        return KeyRef(id=bytes(ref.id))
    if which == "uri" and ref.uri:
        _bounded(ref.uri, MAX_URI_LENGTH, f"{field}.uri", "characters")
        if not ref.uri.startswith("pkcs11:"):
            raise errors.InvalidArgument(f"{field}.uri is not a pkcs11: URI", field=f"{field}.uri")
        return KeyRef.parse(ref.uri)
    raise errors.InvalidArgument(f"{field} needs a label, id or uri", field=field)


def _bounded(value: str | bytes, limit: int, field: str, unit: str) -> None:
    if len(value) > limit:
        raise errors.InvalidArgument(
            f"{field} is limited to {limit} {unit}", field=field, max=limit
        )


def ref_text(ref: hsm_pb2.KeyRef) -> str:
    """A reference as text for audit records and messages (label, id:<hex> or the URI)."""
    which = ref.WhichOneof("selector")
    if which == "id":
        return "id:" + ref.id.hex()
    return str(getattr(ref, which)) if which else ""


def key_algorithm(info: KeyInfo) -> common_pb2.KeyAlgorithm:
    """The proto KeyAlgorithm for a key's type and size (UNSPECIFIED when none fits)."""
    size = info.size_bits or 0
    if info.key_type is KeyAlgorithm.RSA:
        return _RSA_SIZES.get(size, common_pb2.KEY_ALGORITHM_UNSPECIFIED)
    if info.key_type is KeyAlgorithm.EC:
        return _CURVES.get(info.curve or "", common_pb2.KEY_ALGORITHM_UNSPECIFIED)
    if info.key_type is KeyAlgorithm.AES:
        return _AES_SIZES.get(size, common_pb2.KEY_ALGORITHM_UNSPECIFIED)
    if info.key_type is KeyAlgorithm.GENERIC_SECRET:
        return common_pb2.KEY_ALGORITHM_GENERIC_SECRET
    return common_pb2.KEY_ALGORITHM_UNSPECIFIED


@functools.lru_cache(maxsize=1024)  # every Sign answers with it; descriptions are immutable
def key_uri(info: KeyInfo, token_label: str | None) -> str:
    """An RFC 7512 URI that selects exactly this key (token label, label, id, type);
    empty for a key with neither CKA_LABEL nor CKA_ID, which no reference can select
    (another application's object: listing the token must not fail on it)."""
    if not info.label and not info.id_hex:
        return ""
    ref = info.ref
    return KeyRef(
        label=ref.label, id=ref.id, key_class=ref.key_class, token=token_label or None
    ).to_uri()


def key_info(info: KeyInfo, token: str, token_label: str | None) -> hsm_pb2.KeyInfo:
    """The proto KeyInfo of a key on the token configured as ``token``."""
    return hsm_pb2.KeyInfo(
        token=token,
        label=info.label,
        id=bytes.fromhex(info.id_hex),
        uri=key_uri(info, token_label),
        key_class=_KEY_CLASS.get(info.key_class, hsm_pb2.KEY_CLASS_UNSPECIFIED),
        algorithm=key_algorithm(info),
        size_bits=info.size_bits or 0,
        usages=sorted(_USAGE_TO_PB[u] for u in info.usages),
        sensitive=bool(info.sensitive),
        extractable=bool(info.extractable),
        local=bool(info.local),
        persistent=info.token_object,
    )


def usages(values: Iterable[int]) -> tuple[KeyUsage, ...] | None:
    """Requested usages; None when the list is empty (the layer's defaults apply)."""
    result = []
    for value in values:
        usage = _USAGE_FROM_PB.get(value)
        if usage is None:
            raise errors.InvalidArgument("unknown or unspecified key usage", field="usages")
        result.append(usage)
    return tuple(result) or None


def key_spec(value: int) -> KeyPairSpec | SecretKeySpec:
    """What GenerateKey makes for a proto KeyAlgorithm (RSA-1024 is never generated)."""
    spec = _KEY_PAIRS.get(value) or _SECRETS.get(value)
    if spec is None:
        raise errors.InvalidArgument("algorithm cannot be generated", field="algorithm")
    return spec


def diversify_mechanism(case: str) -> DiversifyMechanism:
    """The diversification mechanism of a Derive request's ``mechanism`` oneof case
    (ECDH is handled apart)."""
    return _DIVERSIFY[case]
