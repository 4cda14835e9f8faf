"""WrapKey, UnwrapKey and RewrapForPeer through a real hwgated on the test bed's SoftHSM2.

The escrowed keys are the bed's own: each card's Key Management (9D) key,
wrapped under ``escrow-kek`` at provisioning (hwgate_testbed.escrow). The peer
side is hwgate.recovery (cryptography only); the recovered key must be the
card's key (its public key is the 9D certificate's).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import hwgate
from hwgate import recovery
from hwgate.v1 import common_pb2, hsm_pb2
from hwgate_testbed import escrow

pytestmark = pytest.mark.testbed

K = common_pb2
WRAP, UNWRAP = hsm_pb2.KEY_USAGE_WRAP, hsm_pb2.KEY_USAGE_UNWRAP


def client(hsmd: Any, role: str) -> hwgate.Client:
    return hwgate.Client(hsmd.channel(role))


def card_record(testbed: Any, name: str) -> dict[str, Any]:
    found = [r for r in escrow.records(testbed.paths) if r["card"] == name]
    assert len(found) == 1, f"the bed escrowed {name}'s 9D key once"
    return found[0]


def certificate_key(record: dict[str, Any]) -> Any:
    return x509.load_pem_x509_certificate(record["certificate"].encode()).public_key()


def audit_for(hsmd: Any, action: str, marker: str) -> list[dict[str, Any]]:
    """The audit records of *action* whose fields mention *marker* (a label or a hash)."""
    return [
        r for r in hsmd.audit_records() if r["action"] == action and marker in str(r.values())
    ]


def short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


@pytest.fixture
def cleanup(hsmd: Any) -> Iterator[list[str]]:
    """Labels a test created; deleted afterwards (the bed's token is shared)."""
    labels: list[str] = []
    yield labels
    admin = client(hsmd, "admin")
    for name in labels:
        with contextlib.suppress(hwgate.HwgateError):
            admin.delete_key(name)


def new_label(kind: str, cleanup: list[str]) -> str:
    name = f"{kind}-{uuid.uuid4().hex[:8]}"
    cleanup.append(name)
    return name


@pytest.mark.parametrize("card", ["alice", "bob"])
def test_rewrap_for_peer_recovers_the_cards_key(hsmd: Any, testbed: Any, card: str) -> None:
    record = card_record(testbed, card)
    phone = recovery.new_ephemeral_key()
    blob = escrow.wrapped_key(record)
    result = client(hsmd, "enrollment").rewrap_for_peer(
        "escrow-kek", blob, record["key_algorithm"], recovery.public_key_der(phone)
    )
    assert result.kdf == hsm_pb2.TRANSPORT_KDF_ECDH_NULL_AES_ECB_SHA256
    assert result.key_algorithm == K.KeyAlgorithm.Value(record["key_algorithm"])
    key = recovery.recover_private_key(phone, result)
    assert key.public_key() == certificate_key(record)
    # The wrapped output is neither the escrow blob nor readable with another phone key.
    assert result.wrapped_key != blob
    with pytest.raises(recovery.RecoveryError):
        recovery.recover_private_key(recovery.new_ephemeral_key(), result)
    [audit] = audit_for(hsmd, "hsm.rewrap_for_peer", short_hash(recovery.public_key_der(phone)))
    assert audit["outcome"] == "ok"
    assert audit["wrapping_key"] == "escrow-kek"
    assert audit["wrapped_sha256"] == short_hash(blob)
    assert audit["role"] == "enrollment"


def test_rewrap_for_a_peer_sending_a_raw_point(hsmd: Any, testbed: Any) -> None:
    record = card_record(testbed, "alice")
    phone = recovery.new_ephemeral_key()
    point = phone.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    result = client(hsmd, "enrollment").rewrap_for_peer(
        "escrow-kek", escrow.wrapped_key(record), record["key_algorithm"], point
    )
    hsm_key = serialization.load_der_public_key(result.hsm_public_key)
    assert isinstance(hsm_key, ec.EllipticCurvePublicKey) and hsm_key.curve.name == "secp256r1"
    assert recovery.recover_private_key(phone, result).public_key() == certificate_key(record)


def test_rewrap_leaves_no_object_in_the_token(hsmd: Any, testbed: Any) -> None:
    """Every object RewrapForPeer makes is a session object, destroyed before it returns."""
    admin = client(hsmd, "admin")
    before = {(k.label, k.id) for k in admin.list_keys()}
    record = card_record(testbed, "bob")
    phone = recovery.new_ephemeral_key()
    client(hsmd, "enrollment").rewrap_for_peer(
        "escrow-kek", escrow.wrapped_key(record), record["key_algorithm"],
        recovery.public_key_der(phone),
    )  # fmt: skip
    assert {(k.label, k.id) for k in admin.list_keys()} == before
