"""Key wrapping inside a worker: C_WrapKey, C_UnwrapKey, and re-wrapping for a peer.

Runs only inside a worker process. ``rewrap_for_peer`` is the key-recovery step
as one worker operation: the escrowed key, the ephemeral EC pair and the two
derived keys are session objects of this worker's session, made and destroyed
within the one call, so no plaintext, shared secret or handle ever leaves this
process; what leaves is the re-wrapped blob and a public key.

Policy (who may wrap what under what) is decided above, by label; this layer
checks what only the token knows: key types, usage flags, CKA_EXTRACTABLE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import KDF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from hwgated.hsm.errors import (
    AlgorithmMismatch,
    InvalidArgument,
    KeyExists,
    KeyNotEscrowable,
    KeyUsageNotAllowed,
    WrappedKeyInvalid,
)
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.p11keys import CURVES, Curve, FoundKey, KeyStore, key_info, unwrap_ec_point
from hwgated.hsm.p11manage import NO_CAPABILITIES, pair_templates, usage_template
from hwgated.hsm.types import (
    KeyAlgorithm,
    KeyInfo,
    KeyPairSpec,
    KeyUsage,
    SecretKeySpec,
    WrapMechanism,
)

# The info that binds a RewrapForPeer transport key to its exchange (hsm.proto TransportKdf).
TRANSPORT_LABEL = b"hwgate.v1.RewrapForPeer"
TRANSPORT_KEY_BYTES = 32  # AES-256
_MECHANISMS = {WrapMechanism.AES_KEY_WRAP_PAD: Mechanism.AES_KEY_WRAP_PAD}
_RSA_BITS = {KeyPairSpec.RSA2048: 2048, KeyPairSpec.RSA3072: 3072, KeyPairSpec.RSA4096: 4096}
_EC_CURVES = {KeyPairSpec.EC_P256: CURVES[0], KeyPairSpec.EC_P384: CURVES[1]}
_SECRETS = {
    SecretKeySpec.AES128: (KeyType.AES, 16),
    SecretKeySpec.AES256: (KeyType.AES, 32),
    SecretKeySpec.GENERIC_SECRET: (KeyType.GENERIC_SECRET, None),
}
# P-256 only: its x-coordinate is exactly the AES-256 key; how CKD_NULL cuts a longer
# secret is the module's choice (SoftHSM2 keeps a P-384 secret's rightmost 32 bytes).
PEER_CURVE = CURVES[0]
# What C_UnwrapKey raises for a blob that is not a key wrapped under this key (SoftHSM2
# 2.6.1: CKR_GENERAL_ERROR for a failed RFC 5649 integrity check, CKR_FUNCTION_FAILED
# for a PKCS#8 of another key type), and what other modules answer.
_BAD_BLOB = (
    p11.WrappedKeyInvalid,
    p11.WrappedKeyLenRange,
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
    p11.GeneralError,
    p11.FunctionFailed,
)
Spec = KeyPairSpec | SecretKeySpec


def wrap_key(store: KeyStore, ref: KeyRef, wrapping_ref: KeyRef, mechanism: WrapMechanism) -> bytes:
    """C_WrapKey of a private or secret key under an AES wrapping key."""
    wrapping = _wrapping_key(store, wrapping_ref, KeyUsage.WRAP)
    key = store.find(ref, (KeyClass.PRIVATE, KeyClass.SECRET))
    if not key.obj[Attribute.EXTRACTABLE]:
        raise KeyNotEscrowable(
            f"key {key.label!r} is not extractable: it can never be wrapped out", key=key.label
        )
    return bytes(wrapping.obj.wrap_key(key.obj, mechanism=_MECHANISMS[mechanism]))


def unwrap_key(
    store: KeyStore,
    wrapping_ref: KeyRef,
    mechanism: WrapMechanism,
    blob: bytes,
    spec: Spec,
    *,
    label: str,
    key_id: bytes | None,
    usages: tuple[KeyUsage, ...],
    extractable: bool,
    token_object: bool,
) -> KeyInfo:
    """C_UnwrapKey into a new key object (sensitive; extractable only when asked)."""
    wrapping = _wrapping_key(store, wrapping_ref, KeyUsage.UNWRAP)
    if not label:
        raise InvalidArgument("the new key needs a label", field="template.label")
    if store.label_taken(label):
        raise KeyExists(f"an object labelled {label!r} already exists")
    template = _template(spec, usages, extractable, token_object)
    obj = _unwrap(wrapping, mechanism, blob, spec, template, key_id or os.urandom(16), label)
    store.invalidate()
    return secret_size_bits(key_info(obj), spec)


def rewrap_for_peer(
    session: Any,
    store: KeyStore,
    wrapping_ref: KeyRef,
    mechanism: WrapMechanism,
    blob: bytes,
    spec: Spec,
    peer: bytes,
) -> tuple[bytes, bytes]:
    """Unwrap an escrowed key, agree a transport key with the peer, wrap the key under it.

    Returns (the re-wrapped key, the HSM's ephemeral public key as DER SPKI).
    Every object made here is a session object destroyed before returning.
    """
    wrapping = _wrapping_key(store, wrapping_ref, KeyUsage.UNWRAP)
    peer_point = peer_key(peer)
    curve = PEER_CURVE
    with _destroyed() as made:
        # Sensitive (its value cannot be read), extractable (it must be wrapped once more),
        # no usage: it exists only to be wrapped for the peer.
        escrowed = made(
            _unwrap(wrapping, mechanism, blob, spec, _template(spec, (), True, False, none=True))
        )
        public, private = _ephemeral_pair(session, curve)
        made(public)
        made(private)
        hsm_point = unwrap_ec_point(bytes(public[Attribute.EC_POINT]), curve)
        shared = made(
            _derive(private, Mechanism.ECDH1_DERIVE, (KDF.NULL, None, peer_point), KeyUsage.DERIVE)
        )
        info = transport_info(hsm_point, peer_point)
        transport = made(_derive(shared, Mechanism.AES_ECB_ENCRYPT_DATA, info, KeyUsage.WRAP))
        wrapped = bytes(transport.wrap_key(escrowed, mechanism=_MECHANISMS[mechanism]))
    return wrapped, _spki(hsm_point, curve)


def transport_info(hsm_point: bytes, peer_point: bytes) -> bytes:
    """The 32 bytes AES-ECB-encrypted under the ECDH secret to make the transport key."""
    return hashlib.sha256(TRANSPORT_LABEL + b"\x00" + hsm_point + peer_point).digest()


def peer_key(peer: bytes) -> bytes:
    """The peer's P-256 key as an uncompressed point, from DER SPKI or an X9.62 point;
    INVALID_ARGUMENT (field peer_public_key) for anything else."""
    try:
        if peer[:1] == b"\x30":
            public = serialization.load_der_public_key(peer)
        else:
            public = ec.EllipticCurvePublicKey.from_encoded_point(PEER_CURVE.crypto, peer)
    except ValueError:
        raise _bad_peer("the peer public key is not a valid P-256 point or SPKI") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise _bad_peer("the peer public key is not an EC key")
    if public.curve.name != PEER_CURVE.crypto.name:
        raise _bad_peer(f"the peer public key is on {public.curve.name}, not P-256")
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _bad_peer(message: str) -> InvalidArgument:
    return InvalidArgument(message, field="peer_public_key")


def _wrapping_key(store: KeyStore, ref: KeyRef, usage: KeyUsage) -> FoundKey:
    found = store.find(ref, (KeyClass.SECRET,))
    if found.key_type is not KeyAlgorithm.AES:
        raise AlgorithmMismatch(f"wrapping key {found.label!r} is not an AES key")
    found.require(usage)
    if usage is KeyUsage.WRAP:
        # A key wrapped under a key that can itself leave the token (or be read) is as
        # good as out in the clear: never wrap under one.
        attrs = found.obj.get_attributes([Attribute.EXTRACTABLE, Attribute.SENSITIVE])
        if attrs.get(Attribute.EXTRACTABLE) or not attrs.get(Attribute.SENSITIVE):
            raise KeyUsageNotAllowed(
                f"wrapping key {found.label!r} is extractable or not sensitive: nothing is "
                "wrapped under a key that can leave the token",
                key=found.label,
                usage=KeyUsage.WRAP.value,
            )
    return found


def _template(
    spec: Spec,
    usages: tuple[KeyUsage, ...],
    extractable: bool,
    token_object: bool,
    *,
    none: bool = False,
) -> dict[Attribute, Any]:
    """The new key's attributes; ``none``: every usage flag of its class explicitly off."""
    private = isinstance(spec, KeyPairSpec)
    if none:
        # python-pkcs11 writes FALSE for every usage flag a template leaves out, and a
        # module refuses flags of the other class (CKA_ENCRYPT on a private key):
        # DEFAULT leaves a flag out, FALSE is set only on the class's own flags.
        flags: tuple[Attribute, ...] = (
            Attribute.SIGN,
            Attribute.DECRYPT,
            Attribute.DERIVE,
            Attribute.UNWRAP,
        )
        if not private:
            flags += (Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP)
        template: dict[Attribute, Any] = {**usage_template(()), **dict.fromkeys(flags, False)}
    elif private:
        template = pair_templates(usages)[1]
        if any(u not in _PRIVATE_USAGES for u in usages):
            raise InvalidArgument(
                "a private key cannot verify, encrypt or wrap", field="template.usages"
            )
    else:
        template = usage_template(usages)
    template.update(
        {
            Attribute.TOKEN: token_object,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: extractable,
        }
    )
    return template


_PRIVATE_USAGES = frozenset({KeyUsage.SIGN, KeyUsage.DECRYPT, KeyUsage.DERIVE, KeyUsage.UNWRAP})


def _unwrap(
    wrapping: FoundKey,
    mechanism: WrapMechanism,
    blob: bytes,
    spec: Spec,
    template: dict[Attribute, Any],
    key_id: bytes | None = None,
    label: str | None = None,
) -> Any:
    """C_UnwrapKey; a blob that is no key of ``spec`` under this key is WRAPPED_KEY_INVALID
    (and whatever the module made of it is destroyed)."""
    _check_blob_length(blob, spec, mechanism)
    if isinstance(spec, KeyPairSpec):
        object_class = ObjectClass.PRIVATE_KEY
        key_type = KeyType.RSA if spec in _RSA_BITS else KeyType.EC
    else:
        object_class = ObjectClass.SECRET_KEY
        key_type = _SECRETS[spec][0]
    try:
        obj = wrapping.obj.unwrap_key(
            object_class,
            key_type,
            bytes(blob),
            id=key_id,
            label=label,
            mechanism=_MECHANISMS[mechanism],
            store=bool(template.get(Attribute.TOKEN)),
            capabilities=NO_CAPABILITIES,
            template=template,
        )
    except _BAD_BLOB as exc:
        raise _bad_blob(f"({type(exc).__name__})") from None
    try:
        _check_spec(obj, spec)
    except WrappedKeyInvalid:
        _destroy_quietly(obj)
        raise
    return obj


def _check_blob_length(blob: bytes, spec: Spec, mechanism: WrapMechanism) -> None:
    """An AES key of n bytes (a multiple of 8) wraps to exactly 8 + n bytes (RFC 5649)."""
    length = _SECRETS[spec][1] if isinstance(spec, SecretKeySpec) else None
    if mechanism is WrapMechanism.AES_KEY_WRAP_PAD and length and len(blob) != 8 + length:
        raise _bad_blob(f"(not a {spec.value} key: {len(blob)} bytes)")


def secret_size_bits(info: KeyInfo, spec: Spec) -> KeyInfo:
    """*info* with the size of the secret key *spec* when the module reported none."""
    length = _SECRETS[spec][1] if isinstance(spec, SecretKeySpec) else None
    if info.size_bits or not length:
        return info
    return dataclasses.replace(info, size_bits=length * 8)


def _check_spec(obj: Any, spec: Spec) -> None:
    """The unwrapped key is what the caller said it is (curve, modulus size, length)."""
    if spec in _EC_CURVES:
        params = obj.get_attributes([Attribute.EC_PARAMS]).get(Attribute.EC_PARAMS)
        ok = params is not None and bytes(params) == _EC_CURVES[spec].params_der  # type: ignore[index]
    elif spec in _RSA_BITS:
        modulus = obj.get_attributes([Attribute.MODULUS]).get(Attribute.MODULUS)
        ok = modulus is not None and len(modulus) * 8 == _RSA_BITS[spec]  # type: ignore[index]
    else:
        # SoftHSM2 2.6.1 reports CKA_VALUE_LEN 0 for an unwrapped secret key (and refuses
        # it in the template): 0 means unknown here, and _check_blob_length checked it.
        length = _SECRETS[spec][1]  # type: ignore[index]
        value_len = obj.get_attributes([Attribute.VALUE_LEN]).get(Attribute.VALUE_LEN)
        ok = length is None or not value_len or value_len == length
    if not ok:
        raise _bad_blob(f"(not a {spec.value} key)")


def _bad_blob(detail: str) -> WrappedKeyInvalid:
    return WrappedKeyInvalid(
        f"the wrapped key does not unwrap under this key {detail}", field="wrapped_key"
    )


def _ephemeral_pair(session: Any, curve: Curve) -> tuple[Any, Any]:
    public_template, private_template = pair_templates((KeyUsage.DERIVE,))
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: curve.params_der}, local=True
    )
    return params.generate_keypair(  # type: ignore[no-any-return]
        store=False,
        capabilities=NO_CAPABILITIES,
        public_template=public_template,
        private_template=private_template,
    )


def _derive(base: Any, mechanism: Mechanism, param: Any, usage: KeyUsage) -> Any:
    """A session AES-256 key derived from ``base``, sensitive, never extractable."""
    template = usage_template((usage,))
    template.update({Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
    return base.derive_key(
        KeyType.AES,
        TRANSPORT_KEY_BYTES * 8,
        store=False,
        capabilities=NO_CAPABILITIES,
        mechanism=mechanism,
        mechanism_param=param,
        template=template,
    )


@contextlib.contextmanager
def _destroyed() -> Iterator[Any]:
    """Collect objects with the yielded function; all are destroyed when the block ends."""
    objects: list[Any] = []

    def made(obj: Any) -> Any:
        objects.append(obj)
        return obj

    try:
        yield made
    finally:
        for obj in reversed(objects):
            _destroy_quietly(obj)


def _destroy_quietly(obj: Any) -> None:
    # A session object also disappears when the session ends, so a failure is harmless.
    with contextlib.suppress(pkcs11.exceptions.PKCS11Error):
        obj.destroy()


def _spki(point: bytes, curve: Curve) -> bytes:
    return ec.EllipticCurvePublicKey.from_encoded_point(curve.crypto, point).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


__all__ = [
    "PEER_CURVE",
    "TRANSPORT_LABEL",
    "peer_key",
    "rewrap_for_peer",
    "transport_info",
    "unwrap_key",
    "wrap_key",
]
