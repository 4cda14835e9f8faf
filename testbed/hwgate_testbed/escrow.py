"""Key escrow in the test bed: each card's Key Management (9D) key, wrapped under ``escrow-kek``.

Issuers that offer key recovery generate the key-management key off-card, load
it into the card and keep a copy wrapped under an escrow key in their HSM; a
user who needs the key again (on a new phone, to read mail encrypted to the
card's 9D certificate) gets it re-wrapped for that device
(``HsmService.RewrapForPeer``). The bed does the same: ``vcard.provision``
makes every card key in software (off-card) and the card serves it; this module
loads the 9D key into the token as a session object (sensitive, extractable),
wraps it there under ``escrow-kek`` with CKM_AES_KEY_WRAP_PAD, destroys the
object, and keeps the blob.

Where the blobs live: one JSON file per card, ``DIR/escrow/<GUID>.json``, keyed
by the card UUID (the CHUID GUID, which GetCardInfo reports), holding::

    {"card": "alice", "guid": "<uuid>", "fascn": "<FASC-N digits>",
     "fascn_hex": "<the 25 CHUID bytes>", "slot": "9d",
     "key_algorithm": "KEY_ALGORITHM_EC_P256", "token_label": "hwgate-testbed",
     "wrapping_key": "escrow-kek", "mechanism": "WRAP_MECHANISM_AES_KEY_WRAP_PAD",
     "wrapped_key": "<base64>", "certificate": "<PEM of the 9D certificate>"}

:func:`find_record` looks one up by GUID or FASC-N. The blob is useless without
the token's escrow-kek; the file is still written 0600. Idempotent: a card
with a record keeps it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from hwgate_testbed import softhsm
from hwgate_testbed.fsutil import write_private
from hwgate_testbed.paths import TOKEN_LABEL, TestbedPaths
from hwgate_testbed.vcard.profile import CardProfile, Slot

ESCROW_KEK = "escrow-kek"
MECHANISM = "WRAP_MECHANISM_AES_KEY_WRAP_PAD"
_NAMED_CURVES = {  # DER OIDs of CKA_EC_PARAMS
    "secp256r1": (bytes.fromhex("06082a8648ce3d030107"), "KEY_ALGORITHM_EC_P256"),
    "secp384r1": (bytes.fromhex("06052b81040022"), "KEY_ALGORITHM_EC_P384"),
}


class EscrowError(RuntimeError):
    """A card's key cannot be escrowed (no token, no escrow key, unsupported key)."""


def token_ready(paths: TestbedPaths) -> bool:
    """True when the bed has a provisioned token to escrow into."""
    return paths.softhsm_conf.is_file() and paths.user_pin.is_file()


def ensure_escrowed(paths: TestbedPaths, card_dir: Path) -> Path:
    """Escrow the 9D key of the card in *card_dir* unless it is; the record's path."""
    profile = CardProfile.load(card_dir)
    record_path = paths.escrow_file(str(profile.guid))
    if record_path.is_file():
        return record_path
    credential = profile.slots[Slot.KEY_MANAGEMENT]
    template, algorithm = key_template(credential.key)
    with softhsm.user_session(paths, rw=True) as session:
        blob = _wrap(session, template)
    record = {
        "card": profile.name,
        "guid": str(profile.guid),
        "fascn": str(profile.fascn),
        "fascn_hex": profile.fascn.encode().hex(),
        "slot": f"{Slot.KEY_MANAGEMENT:02x}",
        "key_algorithm": algorithm,
        "token_label": TOKEN_LABEL,
        "wrapping_key": ESCROW_KEK,
        "mechanism": MECHANISM,
        "wrapped_key": base64.b64encode(blob).decode(),
        "certificate": credential.certificate.public_bytes(serialization.Encoding.PEM).decode(),
    }
    write_private(record_path, json.dumps(record, indent=2) + "\n")
    return record_path


def _wrap(session: Any, template: dict[Attribute, Any]) -> bytes:
    kek = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=ESCROW_KEK)
    obj = session.create_object(template)
    try:
        return bytes(kek.wrap_key(obj, mechanism=Mechanism.AES_KEY_WRAP_PAD))
    finally:
        obj.destroy()


def key_template(key: Any) -> tuple[dict[Attribute, Any], str]:
    """The C_CreateObject template of a private key (a session object that can only be
    wrapped: sensitive, extractable, no usage) and its KeyAlgorithm name."""
    base: dict[Attribute, Any] = {
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: True,
        Attribute.SIGN: False,
        Attribute.DECRYPT: False,
        Attribute.DERIVE: False,
    }
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _NAMED_CURVES:
            raise EscrowError(f"cannot escrow a key on {key.curve.name}")
        params, algorithm = _NAMED_CURVES[key.curve.name]
        size = (key.curve.key_size + 7) // 8
        value = key.private_numbers().private_value.to_bytes(size, "big")
        return {**base, Attribute.KEY_TYPE: KeyType.EC, Attribute.EC_PARAMS: params,
                Attribute.VALUE: value}, algorithm  # fmt: skip
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        fields = {
            Attribute.MODULUS: n.public_numbers.n, Attribute.PUBLIC_EXPONENT: n.public_numbers.e,
            Attribute.PRIVATE_EXPONENT: n.d, Attribute.PRIME_1: n.p, Attribute.PRIME_2: n.q,
            Attribute.EXPONENT_1: n.dmp1, Attribute.EXPONENT_2: n.dmq1,
            Attribute.COEFFICIENT: n.iqmp,
        }  # fmt: skip
        values = {a: v.to_bytes((v.bit_length() + 7) // 8, "big") for a, v in fields.items()}
        algorithm = f"KEY_ALGORITHM_RSA_{key.key_size}"
        return {**base, Attribute.KEY_TYPE: KeyType.RSA, **values}, algorithm
    raise EscrowError(f"cannot escrow a {type(key).__name__}")


def records(paths: TestbedPaths) -> Iterator[dict[str, Any]]:
    """Every escrow record of the bed."""
    if not paths.escrow.is_dir():
        return
    for path in sorted(paths.escrow.glob("*.json")):
        yield json.loads(path.read_text())


def find_record(
    paths: TestbedPaths, *, guid: str | None = None, fascn: str | None = None
) -> dict[str, Any] | None:
    """The escrow record of the card with this GUID (card UUID) or FASC-N (digits or hex)."""
    if guid is not None:
        path = paths.escrow_file(guid)
        return json.loads(path.read_text()) if path.is_file() else None
    for record in records(paths):
        if fascn is not None and fascn.lower() in (record["fascn"], record["fascn_hex"]):
            return record
    return None


def wrapped_key(record: dict[str, Any]) -> bytes:
    """The record's blob (what RewrapForPeerRequest.wrapped_key takes)."""
    return base64.b64decode(record["wrapped_key"])
