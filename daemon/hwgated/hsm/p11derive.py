"""Key derivation inside the HSM: ECDH (CKD_NULL) and AES encrypt-data diversification.

Runs inside a worker. The result is always an AES key object. A token object
outlives the worker and gets a reference back; a session object would vanish
with this worker's session (and is invisible to the other workers), so it is
read (it must be extractable) and destroyed before the call returns.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import KDF, Attribute, KeyType, Mechanism

from hwgated.hsm.errors import AlgorithmMismatch, InvalidArgument, KeyExists
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.p11keys import Curve, FoundKey, KeyStore
from hwgated.hsm.types import DerivedKey, DiversifyMechanism, KeyAlgorithm, KeyUsage

AES_KEY_LENGTHS = (16, 24, 32)


def derive_ecdh(
    store: KeyStore,
    ref: KeyRef,
    peer: bytes,
    *,
    label: str | None,
    extractable: bool,
    token_object: bool,
    key_length: int,
) -> DerivedKey:
    """ECDH1_DERIVE with CKD_NULL between our EC private key and the peer's public key."""
    key = store.find(ref, (KeyClass.PRIVATE,))
    if key.key_type is not KeyAlgorithm.EC or key.curve is None:
        raise AlgorithmMismatch("ECDH needs an EC private key on a supported curve")
    if key_length > (key.curve.bits + 7) // 8:
        raise InvalidArgument("key_length is longer than the ECDH shared secret")
    point = peer_point(peer, key.curve)
    param = (KDF.NULL, None, point)
    return _derive(
        store, key, Mechanism.ECDH1_DERIVE, param, label, extractable, token_object, key_length
    )


def derive_diversified(
    store: KeyStore,
    ref: KeyRef,
    mechanism: DiversifyMechanism,
    data: bytes,
    iv: bytes | None,
    *,
    label: str | None,
    extractable: bool,
    token_object: bool,
    key_length: int,
) -> DerivedKey:
    """AES_ECB_ENCRYPT_DATA / AES_CBC_ENCRYPT_DATA of ``data`` under the master AES key."""
    key = store.find(ref, (KeyClass.SECRET,))
    if key.key_type is not KeyAlgorithm.AES:
        raise AlgorithmMismatch("diversification needs an AES master key")
    if mechanism is DiversifyMechanism.AES_ECB:
        return _derive(
            store,
            key,
            Mechanism.AES_ECB_ENCRYPT_DATA,
            bytes(data),
            label,
            extractable,
            token_object,
            key_length,
        )
    if iv is None or len(iv) != 16:
        raise InvalidArgument("AES_CBC diversification needs a 16-byte iv")
    return _derive(
        store,
        key,
        Mechanism.AES_CBC_ENCRYPT_DATA,
        (bytes(iv), bytes(data)),
        label,
        extractable,
        token_object,
        key_length,
    )


def peer_point(peer: bytes, curve: Curve) -> bytes:
    """The peer's key as an uncompressed point on ``curve``, from SPKI DER or an X9.62 point.

    cryptography checks the point is on the curve, so a bad point is refused here
    instead of by whatever the module happens to do with it.
    """
    try:
        if peer[:1] == b"\x30":
            public = serialization.load_der_public_key(peer)
        else:
            public = ec.EllipticCurvePublicKey.from_encoded_point(curve.crypto, peer)
    except ValueError:
        raise InvalidArgument("peer public key is not a valid EC point or SPKI") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != curve.crypto.name:
        raise InvalidArgument(f"peer public key is not on {curve.name}")
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _derive(
    store: KeyStore,
    base: FoundKey,
    mechanism: Mechanism,
    param: Any,
    label: str | None,
    extractable: bool,
    token_object: bool,
    key_length: int,
) -> DerivedKey:
    if key_length not in AES_KEY_LENGTHS:
        raise InvalidArgument("key_length must be 16, 24 or 32 bytes")
    base.require(KeyUsage.DERIVE)
    if not token_object and not extractable:
        raise InvalidArgument("a derived session key must be extractable (it is not kept)")
    if token_object and label and store.label_taken(label):
        raise KeyExists(f"an object labelled {label!r} already exists")
    key_id = os.urandom(16) if token_object else None
    template = {
        Attribute.SENSITIVE: not extractable,
        Attribute.EXTRACTABLE: extractable,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.DERIVE: True,
    }
    derived = base.obj.derive_key(
        KeyType.AES,
        key_length * 8,
        id=key_id,
        label=label,
        store=token_object,
        mechanism=mechanism,
        mechanism_param=param,
        template=template,
    )
    try:
        value = bytearray(derived[Attribute.VALUE]) if extractable else None
    finally:
        if not token_object:
            _destroy_quietly(derived)
    if not token_object:
        return DerivedKey(ref=None, key_length=key_length, value=value)
    store.invalidate()
    ref = KeyRef(label=label or None, id=key_id, key_class=KeyClass.SECRET)
    return DerivedKey(ref=ref, key_length=key_length, value=value)


def _destroy_quietly(obj: Any) -> None:
    # A session object also disappears when the session ends, so a failure is harmless.
    with contextlib.suppress(pkcs11.exceptions.PKCS11Error):
        obj.destroy()
