"""Key lifecycle inside a worker: list, generate (never overwriting a label), delete.

Generated private and secret keys are sensitive; private keys are never
extractable (a secret key may be, when asked: diversification masters for
tests and escrow). Every change drops this worker's lookup cache; the pool
tells the other workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pkcs11 import Attribute, KeyType, MechanismFlag

from hwgated.hsm.errors import InvalidArgument, KeyExists, KeyNotFound
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.p11keys import CURVES, KeyStore, key_info
from hwgated.hsm.types import KeyInfo, KeyPairSpec, KeyUsage, SecretKeySpec

_RSA_BITS = {KeyPairSpec.RSA2048: 2048, KeyPairSpec.RSA3072: 3072, KeyPairSpec.RSA4096: 4096}
_EC_CURVES = {KeyPairSpec.EC_P256: CURVES[0], KeyPairSpec.EC_P384: CURVES[1]}
_SECRET = {
    SecretKeySpec.AES128: (KeyType.AES, 128),
    SecretKeySpec.AES256: (KeyType.AES, 256),
    SecretKeySpec.GENERIC_SECRET: (KeyType.GENERIC_SECRET, 256),
}
_FLAGS = {
    KeyUsage.SIGN: MechanismFlag.SIGN,
    KeyUsage.VERIFY: MechanismFlag.VERIFY,
    KeyUsage.DERIVE: MechanismFlag.DERIVE,
    KeyUsage.ENCRYPT: MechanismFlag.ENCRYPT,
    KeyUsage.DECRYPT: MechanismFlag.DECRYPT,
    KeyUsage.WRAP: MechanismFlag.WRAP,
    KeyUsage.UNWRAP: MechanismFlag.UNWRAP,
}
# The public half of a pair gets the counterpart of each private capability.
_COUNTERPART = {
    KeyUsage.SIGN: KeyUsage.VERIFY,
    KeyUsage.DECRYPT: KeyUsage.ENCRYPT,
    KeyUsage.UNWRAP: KeyUsage.WRAP,
}


def list_keys(store: KeyStore) -> list[KeyInfo]:
    """Private and secret keys, and public keys with no private key of the same id/label."""
    infos = [key_info(obj) for obj in store.all_keys()]
    private = {(i.label, i.id_hex) for i in infos if i.key_class is KeyClass.PRIVATE}
    return [
        i for i in infos if i.key_class is not KeyClass.PUBLIC or (i.label, i.id_hex) not in private
    ]


def generate_key_pair(
    session: Any,
    store: KeyStore,
    label: str,
    spec: KeyPairSpec,
    key_id: bytes | None,
    usages: Iterable[KeyUsage],
    token_object: bool,
) -> KeyInfo:
    """Generate a key pair on the token; KeyExists when the label is taken."""
    _check_new_label(store, label)
    key_id = key_id or os.urandom(16)
    wanted = set(usages) | {_COUNTERPART[u] for u in usages if u in _COUNTERPART}
    caps = _flags(wanted)
    private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
    if spec in _RSA_BITS:
        _, private = session.generate_keypair(
            KeyType.RSA,
            _RSA_BITS[spec],
            id=key_id,
            label=label,
            store=token_object,
            capabilities=caps,
            private_template=private_template,
        )
    else:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: _EC_CURVES[spec].params_der}, local=True
        )
        _, private = params.generate_keypair(
            id=key_id,
            label=label,
            store=token_object,
            capabilities=caps,
            private_template=private_template,
        )
    store.invalidate()
    return key_info(private)


def generate_secret_key(
    session: Any,
    store: KeyStore,
    label: str,
    spec: SecretKeySpec,
    key_id: bytes | None,
    usages: Iterable[KeyUsage],
    token_object: bool,
    extractable: bool,
) -> KeyInfo:
    """Generate a secret key on the token; KeyExists when the label is taken."""
    _check_new_label(store, label)
    key_type, bits = _SECRET[spec]
    key = session.generate_key(
        key_type,
        bits,
        id=key_id or os.urandom(16),
        label=label,
        store=token_object,
        capabilities=_flags(set(usages)),
        template={Attribute.SENSITIVE: not extractable, Attribute.EXTRACTABLE: extractable},
    )
    store.invalidate()
    return key_info(key)


def delete_key(store: KeyStore, ref: KeyRef) -> int:
    """Destroy every key/certificate object the reference matches; the count destroyed."""
    objects = store.search(ref)
    if not objects:
        raise KeyNotFound(f"no object matches {ref}")
    for obj in objects:
        obj.destroy()
    store.invalidate()
    return len(objects)


def _check_new_label(store: KeyStore, label: str) -> None:
    if not label:
        raise InvalidArgument("a new key needs a label")
    if store.label_taken(label):
        raise KeyExists(f"an object labelled {label!r} already exists")


def _flags(usages: set[KeyUsage]) -> MechanismFlag:
    flags = MechanismFlag(0)
    for usage in usages:
        flags |= _FLAGS[usage]
    return flags
