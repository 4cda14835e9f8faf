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

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

import hwgate
from hwgate import recovery
from hwgate.v1 import common_pb2, hsm_pb2
from hwgate_testbed import escrow
from support.logscan import register_secret

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
    return [r for r in hsmd.audit_records() if r["action"] == action and marker in str(r.values())]


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
    """Every object RewrapForPeer makes is a session object, destroyed before it returns
    (a worker lists its own session's objects too; consecutive idle calls rotate over
    the token's two workers, so each of them is asked)."""
    admin = client(hsmd, "admin")

    def objects() -> set[tuple[str, bytes, bool]]:
        return {(k.label, k.id, k.persistent) for _ in range(4) for k in admin.list_keys()}

    before = objects()
    assert all(persistent for *_, persistent in before)
    record = card_record(testbed, "bob")
    for _ in range(2):
        client(hsmd, "enrollment").rewrap_for_peer(
            "escrow-kek", escrow.wrapped_key(record), record["key_algorithm"],
            recovery.public_key_der(recovery.new_ephemeral_key()),
        )  # fmt: skip
    assert objects() == before


# --- WrapKey / UnwrapKey -------------------------------------------------------------

AES_256 = "aes-256"


@pytest.fixture
def keys(hsmd: Any, cleanup: list[str]) -> dict[str, str]:
    """Fresh keys for one test: a wrapping key the policy allows (wrap-kek-*), one it
    does not, an escrowable extractable AES key (wrap-esc-*), an extractable key no
    wrap rule names, and an escrowable-by-name key the token holds as not extractable."""
    admin = client(hsmd, "admin")
    made = {
        "kek": new_label("wrap-kek", cleanup),
        "other_kek": new_label("wrap-other-kek", cleanup),
        "escrowable": new_label("wrap-esc-aes", cleanup),
        "unmarked": new_label("plain-aes", cleanup),
        "sealed": new_label("wrap-esc-sealed", cleanup),
        "leaky_kek": new_label("wrap-kek-leaky", cleanup),
    }
    for name in ("kek", "other_kek"):
        admin.generate_key(made[name], AES_256, usages=[WRAP, UNWRAP])
    admin.generate_key(made["leaky_kek"], AES_256, usages=[WRAP, UNWRAP], extractable=True)
    for name in ("escrowable", "unmarked"):
        admin.generate_key(made[name], AES_256, extractable=True)
    admin.generate_key(made["sealed"], AES_256)
    return made


def test_wrap_unwrap_round_trip_of_a_secret_key(
    hsmd: Any, keys: dict[str, str], cleanup: list[str]
) -> None:
    admin = client(hsmd, "admin")
    wrapped = admin.wrap_key(keys["escrowable"], keys["kek"])
    assert wrapped.key.label == keys["escrowable"]
    assert wrapped.key.algorithm == K.KEY_ALGORITHM_AES_256
    assert wrapped.mechanism == hsm_pb2.WRAP_MECHANISM_AES_KEY_WRAP_PAD
    assert len(wrapped.wrapped_key) == 40  # RFC 5649 of 32 bytes: 8-byte AIV + 32
    copy = new_label("wrap-esc-copy", cleanup)
    info = admin.unwrap_key(keys["kek"], wrapped.wrapped_key, copy, AES_256, extractable=True)
    assert (info.label, info.algorithm, info.persistent) == (copy, K.KEY_ALGORITHM_AES_256, True)
    assert info.sensitive and info.extractable
    # RFC 5649 is deterministic: the copy wraps to the same blob only if it is the same key.
    assert admin.wrap_key(copy, keys["kek"]).wrapped_key == wrapped.wrapped_key
    [record] = audit_for(hsmd, "hsm.wrap", keys["escrowable"])
    assert record["outcome"] == "ok" and record["wrapping_key"] == keys["kek"]
    assert record["wrapped_sha256"] == short_hash(wrapped.wrapped_key)
    [record] = audit_for(hsmd, "hsm.unwrap", copy)
    assert record["outcome"] == "ok" and record["key_algorithm"] == "KEY_ALGORITHM_AES_256"


def test_unwrap_an_escrowed_card_key_signs_for_its_certificate(
    hsmd: Any, testbed: Any, cleanup: list[str]
) -> None:
    """A private key round trip: the bed's escrow blob of alice's 9D key unwrapped into
    the token signs for alice's 9D certificate, and wraps back to the very same blob."""
    record = card_record(testbed, "alice")
    blob = escrow.wrapped_key(record)
    admin = client(hsmd, "admin")
    name = new_label("wrap-esc-alice", cleanup)
    info = admin.unwrap_key(
        "escrow-kek", blob, name, "ec-p256", usages=[hsm_pb2.KEY_USAGE_SIGN], extractable=True
    )
    assert info.key_class == hsm_pb2.KEY_CLASS_KEY_PAIR
    assert info.algorithm == K.KEY_ALGORITHM_EC_P256
    digest = hashlib.sha256(b"escrow round trip").digest()
    signature = admin.sign(name, "ecdsa-sha256", digest=digest)
    certificate_key(record).verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert admin.wrap_key(name, "escrow-kek").wrapped_key == blob


# --- refusals ---------------------------------------------------------------------------


def refused(call: Any, *args: Any, **kwargs: Any) -> hwgate.HwgateError:
    with pytest.raises(hwgate.HwgateError) as caught:
        call(*args, **kwargs)
    return caught.value


def only_audit(hsmd: Any, action: str, marker: str) -> dict[str, Any]:
    found = audit_for(hsmd, action, marker)
    assert len(found) == 1, f"one {action} record for {marker}: {found}"
    return found[0]


def test_wrap_refusals(hsmd: Any, keys: dict[str, str]) -> None:
    admin, enrollment = client(hsmd, "admin"), client(hsmd, "enrollment")
    cases = [
        # a key no wrap rule names: not marked for escrow, whoever asks
        ("admin", keys["unmarked"], keys["kek"], grpc.StatusCode.FAILED_PRECONDITION,
         "KEY_NOT_ESCROWABLE", {"key": keys["unmarked"]}),
        # named by a rule, but the token holds it as not extractable
        ("admin", keys["sealed"], keys["kek"], grpc.StatusCode.FAILED_PRECONDITION,
         "KEY_NOT_ESCROWABLE", {"key": keys["sealed"]}),
        # the wrong role: enrollment may use the key but not wrap it
        ("enrollment", keys["escrowable"], keys["kek"], grpc.StatusCode.PERMISSION_DENIED,
         "POLICY_DENIED", {"rule": "wrap"}),
        # the wrong wrapping key: not one the rule allows for this key
        ("admin", keys["escrowable"], keys["other_kek"], grpc.StatusCode.PERMISSION_DENIED,
         "POLICY_DENIED", {"rule": "wrapping_key"}),
        # an allowed name, but a wrapping key that could itself leave the token
        ("admin", keys["escrowable"], keys["leaky_kek"], grpc.StatusCode.FAILED_PRECONDITION,
         "KEY_USAGE_NOT_ALLOWED", {"key": keys["leaky_kek"], "usage": "wrap"}),
    ]  # fmt: skip
    for role, key, kek, code, reason, metadata in cases:
        error = refused({"admin": admin, "enrollment": enrollment}[role].wrap_key, key, kek)
        assert (error.code, error.reason) == (code, reason), (key, kek)
        assert metadata.items() <= error.metadata.items()
        records = [
            r for r in audit_for(hsmd, "hsm.wrap", key)
            if r["role"] == role and r["wrapping_key"] == kek
        ]  # fmt: skip
        assert [r["outcome"] for r in records] == [reason], (key, kek)


def test_unwrap_refusals(hsmd: Any, keys: dict[str, str], cleanup: list[str]) -> None:
    admin, enrollment = client(hsmd, "admin"), client(hsmd, "enrollment")
    blob = admin.wrap_key(keys["escrowable"], keys["kek"]).wrapped_key
    tampered = bytes([blob[0] ^ 1]) + blob[1:]
    cases = [
        (enrollment, keys["kek"], blob, new_label("wrap-esc-x", cleanup),
         grpc.StatusCode.PERMISSION_DENIED, "POLICY_DENIED", {"rule": "wrap"}),
        (admin, keys["other_kek"], blob, new_label("wrap-esc-x", cleanup),
         grpc.StatusCode.PERMISSION_DENIED, "POLICY_DENIED", {"rule": "wrapping_key"}),
        (admin, keys["kek"], blob, new_label("plain-x", cleanup),
         grpc.StatusCode.PERMISSION_DENIED, "POLICY_DENIED", {"rule": "wrap"}),
        (admin, keys["kek"], tampered, new_label("wrap-esc-x", cleanup),
         grpc.StatusCode.INVALID_ARGUMENT, "WRAPPED_KEY_INVALID", {"field": "wrapped_key"}),
    ]  # fmt: skip
    for who, kek, data, name, code, reason, metadata in cases:
        error = refused(who.unwrap_key, kek, data, name, AES_256)
        assert (error.code, error.reason) == (code, reason), name
        assert metadata.items() <= error.metadata.items()
        assert only_audit(hsmd, "hsm.unwrap", name)["outcome"] == reason
    # nothing was left in the token by the refused or failed unwraps
    labels = {k.label for k in admin.list_keys()}
    assert not labels & {case[3] for case in cases}


def test_rewrap_refusals(hsmd: Any, testbed: Any, keys: dict[str, str]) -> None:
    record = card_record(testbed, "alice")
    blob = escrow.wrapped_key(record)
    algorithm = record["key_algorithm"]
    enrollment = client(hsmd, "enrollment")
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    tampered = blob[:-1] + bytes([blob[-1] ^ 0x80])
    cases = [
        # the wrong wrapping key: one the rewrap rule does not name
        ("other", keys["other_kek"], blob, algorithm, None,
         grpc.StatusCode.PERMISSION_DENIED, "POLICY_DENIED", {"rule": "wrapping_key"}),
        # an allowed wrapping key, but not the one the blob was wrapped under
        ("kek", keys["kek"], blob, algorithm, None,
         grpc.StatusCode.INVALID_ARGUMENT, "WRAPPED_KEY_INVALID", {"field": "wrapped_key"}),
        ("tampered", "escrow-kek", tampered, algorithm, None,
         grpc.StatusCode.INVALID_ARGUMENT, "WRAPPED_KEY_INVALID", {"field": "wrapped_key"}),
        ("wrong type", "escrow-kek", blob, "rsa-2048", None,
         grpc.StatusCode.INVALID_ARGUMENT, "WRAPPED_KEY_INVALID", {"field": "wrapped_key"}),
        ("p384", "escrow-kek", blob, algorithm, p384.public_bytes(*der),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", {"field": "peer_public_key"}),
        ("k1", "escrow-kek", blob, algorithm, k1.public_bytes(*der),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", {"field": "peer_public_key"}),
    ]  # fmt: skip
    for what, kek, data, key_algorithm, peer, code, reason, metadata in cases:
        peer = peer or recovery.public_key_der(recovery.new_ephemeral_key())
        error = refused(enrollment.rewrap_for_peer, kek, data, key_algorithm, peer)
        assert (error.code, error.reason) == (code, reason), what
        assert metadata.items() <= error.metadata.items(), what
        audit = only_audit(hsmd, "hsm.rewrap_for_peer", short_hash(peer))
        assert (audit["outcome"], audit["role"]) == (reason, "enrollment"), what
    # a role that may not call the RPC at all
    error = refused(client(hsmd, "kiosk").rewrap_for_peer, "escrow-kek", blob, algorithm,
                    recovery.public_key_der(recovery.new_ephemeral_key()))  # fmt: skip
    assert (error.reason, error.metadata.get("rule")) == ("POLICY_DENIED", "rpc")


def test_rewrap_a_wrapped_secret_key(hsmd: Any, keys: dict[str, str]) -> None:
    """A secret key escrowed with WrapKey comes out of RewrapForPeer as its 32-byte value:
    the same value for two phones, though every exchange has its own transport key."""
    admin, enrollment = client(hsmd, "admin"), client(hsmd, "enrollment")
    blob = admin.wrap_key(keys["escrowable"], keys["kek"]).wrapped_key
    values = []
    for _ in range(2):
        phone = recovery.new_ephemeral_key()
        result = enrollment.rewrap_for_peer(
            keys["kek"], blob, AES_256, recovery.public_key_der(phone)
        )
        values.append(recovery.recover_secret(phone, result))
        register_secret(values[-1])  # the end-of-session scan looks for it in every log
    assert len(values[0]) == 32 and values[0] == values[1]
    assert values[0] not in blob
