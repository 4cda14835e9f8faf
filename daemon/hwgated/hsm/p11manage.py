"""Key lifecycle inside a worker: list, generate (never overwriting a label), delete.

Generated private and secret keys are sensitive; private keys are never
extractable (a secret key may be, when asked: diversification masters for
tests and escrow). Every change drops this worker's lookup cache; the pool
tells the other workers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from pkcs11 import Attribute, KeyType, MechanismFlag
from pkcs11.constants import DEFAULT

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
_USAGE_ATTR = {
    KeyUsage.SIGN: Attribute.SIGN,
    KeyUsage.VERIFY: Attribute.VERIFY,
    KeyUsage.DERIVE: Attribute.DERIVE,
    KeyUsage.ENCRYPT: Attribute.ENCRYPT,
    KeyUsage.DECRYPT: Attribute.DECRYPT,
    KeyUsage.WRAP: Attribute.WRAP,
    KeyUsage.UNWRAP: Attribute.UNWRAP,
}
# Which half of a pair carries each usage (PKCS#11 defines them per object class).
_PUBLIC_USAGES = frozenset({KeyUsage.VERIFY, KeyUsage.ENCRYPT, KeyUsage.WRAP})
_PRIVATE_USAGES = frozenset({KeyUsage.SIGN, KeyUsage.DERIVE, KeyUsage.DECRYPT, KeyUsage.UNWRAP})
# The public half of a pair gets the counterpart of each private capability.
_COUNTERPART = {
    KeyUsage.SIGN: KeyUsage.VERIFY,
    KeyUsage.DECRYPT: KeyUsage.ENCRYPT,
    KeyUsage.UNWRAP: KeyUsage.WRAP,
}
# python-pkcs11 writes every usage flag into its templates (FALSE for the ones not in
# ``capabilities``); a template value of DEFAULT makes it leave that attribute out.
# Some modules (tpm2-pkcs11) reject explicit FALSE flags they would set themselves,
# so a template carries TRUE for what was asked and nothing for the rest: the module
# applies its defaults and KeyInfo reports what it actually set, read back.
NO_CAPABILITIES = MechanismFlag(0)


def usage_template(usages: Iterable[KeyUsage]) -> dict[Attribute, Any]:
    """TRUE for each usage asked for, DEFAULT (left out) for every other usage flag."""
    wanted = set(usages)
    return {attr: True if usage in wanted else DEFAULT for usage, attr in _USAGE_ATTR.items()}


def pair_templates(
    usages: Iterable[KeyUsage],
) -> tuple[dict[Attribute, Any], dict[Attribute, Any]]:
    """(public, private) templates for a key pair with ``usages``: each half gets the
    asked usages that belong to its class (plus the public counterparts of the private
    ones); private keys are sensitive and never extractable."""
    asked = set(usages)
    wanted = asked | {_COUNTERPART[u] for u in asked if u in _COUNTERPART}
    public = usage_template(wanted & _PUBLIC_USAGES)
    private = usage_template(wanted & _PRIVATE_USAGES)
    private.update({Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
    return public, private


def secret_template(usages: Iterable[KeyUsage], extractable: bool) -> dict[Attribute, Any]:
    """The template for a secret key with ``usages``."""
    template = usage_template(usages)
    template.update({Attribute.SENSITIVE: not extractable, Attribute.EXTRACTABLE: extractable})
    return template


def list_keys(store: KeyStore) -> list[KeyInfo]:
    """Private and secret keys, and public keys with no private key of the same id/label."""
    infos = [key_info(obj) for obj in store.all_keys()]
    public = {(i.label, i.id_hex): i for i in infos if i.key_class is KeyClass.PUBLIC}
    private = {(i.label, i.id_hex) for i in infos if i.key_class is KeyClass.PRIVATE}
    result = []
    for info in infos:
        name = (info.label, info.id_hex)
        if info.key_class is KeyClass.PRIVATE and name in public:
            result.append(pair_info(info, public[name]))
        elif info.key_class is not KeyClass.PUBLIC or name not in private:
            result.append(info)
    return result


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
    public_template, private_template = pair_templates(usages)
    if spec in _RSA_BITS:
        public, private = session.generate_keypair(
            KeyType.RSA,
            _RSA_BITS[spec],
            id=key_id,
            label=label,
            store=token_object,
            capabilities=NO_CAPABILITIES,
            public_template=public_template,
            private_template=private_template,
        )
    else:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: _EC_CURVES[spec].params_der}, local=True
        )
        public, private = params.generate_keypair(
            id=key_id,
            label=label,
            store=token_object,
            capabilities=NO_CAPABILITIES,
            public_template=public_template,
            private_template=private_template,
        )
    store.invalidate()
    return pair_info(key_info(private), key_info(public))


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
        capabilities=NO_CAPABILITIES,
        template=secret_template(usages, extractable),
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


def pair_info(private: KeyInfo, public: KeyInfo) -> KeyInfo:
    """The private key's description with the public half's usages added: a pair is
    one key to the API, and VERIFY/ENCRYPT/WRAP live on the public object."""
    return dataclasses.replace(private, usages=private.usages | public.usages)
