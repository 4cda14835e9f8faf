"""ListKeys, GetPublicKey, GenerateKey, DeleteKey and Derive through a real hwgated."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hsm_service_support import label, public_key, verify
from hsm_values import secret_value

from hwgate.v1 import common_pb2, hsm_pb2
from support.daemon import error_info

pytestmark = pytest.mark.testbed

K = common_pb2
ECB, CBC = "aes_ecb_encrypt_data", "aes_cbc_encrypt_data"


def ecdh(peer: bytes) -> dict[str, object]:
    """DeriveRequest keywords: the ECDH case of the mechanism oneof."""
    return {"ecdh": hsm_pb2.EcdhDerivation(peer_public_key=peer)}


def diversify(mechanism: str, data: bytes, iv: bytes = b"") -> dict[str, object]:
    """DeriveRequest keywords: an AES diversification case of the mechanism oneof."""
    if mechanism == CBC:
        return {CBC: hsm_pb2.AesCbcEncryptDataDerivation(data=data, iv=iv)}
    return {ECB: hsm_pb2.AesEcbEncryptDataDerivation(data=data)}


def new_label(kind: str) -> str:
    return f"svc-{kind}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup(hsmd) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """Labels a test created; deleted afterwards (the test bed token is shared)."""
    labels: list[str] = []
    yield labels
    stub = hsmd.stub()
    for name in labels:
        with contextlib.suppress(grpc.RpcError):
            stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=label(name)))


def rpc_error(call, request):  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return error_info(err.value)


def test_list_keys_filters_by_pattern_and_policy(hsmd) -> None:
    admin = hsmd.stub().ListKeys(hsm_pb2.ListKeysRequest()).keys
    labels = {k.label for k in admin}
    assert {
        "issuing-ca",
        "signer-p256",
        "signer-rsa",
        "ecdh-p256",
        "activation-master",
        "hmac-key",
    } <= labels
    enrollment = {k.label for k in hsmd.stub("enrollment").ListKeys(hsm_pb2.ListKeysRequest()).keys}
    assert "issuing-ca" not in enrollment and "signer-p256" in enrollment
    signers = (
        hsmd.stub()
        .ListKeys(hsm_pb2.ListKeysRequest(label_pattern="signer-*", token="testbed"))
        .keys
    )
    assert sorted(k.label for k in signers) == ["signer-p256", "signer-rsa"]
    by_label = {k.label: k for k in admin}
    p256, master = by_label["signer-p256"], by_label["activation-master"]
    assert (
        p256.key_class == hsm_pb2.KEY_CLASS_KEY_PAIR and p256.algorithm == K.KEY_ALGORITHM_EC_P256
    )
    assert hsm_pb2.KEY_USAGE_SIGN in p256.usages and p256.token == "testbed" and p256.persistent
    assert master.algorithm == K.KEY_ALGORITHM_AES_256 and master.size_bits == 256
    assert master.sensitive and not master.extractable
    assert by_label["issuing-ca"].algorithm == K.KEY_ALGORITHM_RSA_3072


def test_get_public_key_der_pem_and_info(hsmd) -> None:
    reply = hsmd.stub().GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=label("signer-rsa")))
    assert (
        serialization.load_pem_public_key(reply.pem.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == reply.der
    )
    assert reply.algorithm == K.KEY_ALGORITHM_RSA_2048 and reply.key.label == "signer-rsa"
    code, reason, _ = rpc_error(
        hsmd.stub().GetPublicKey, hsm_pb2.GetPublicKeyRequest(key=label("hmac-key"))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ALGORITHM_MISMATCH")


@pytest.mark.parametrize(
    ("algorithm", "sign_with"),
    [
        (K.KEY_ALGORITHM_EC_P256, "ECDSA_SHA256"),
        (K.KEY_ALGORITHM_EC_P384, "ECDSA_SHA384"),
        (K.KEY_ALGORITHM_RSA_2048, "RSA_PSS_SHA256"),
    ],
)
def test_generate_sign_delete(hsmd, algorithm: int, sign_with: str) -> None:
    stub, name = hsmd.stub(), new_label("pair")
    info = stub.GenerateKey(hsm_pb2.GenerateKeyRequest(label=name, algorithm=algorithm)).key
    try:
        assert (info.label, info.algorithm, info.key_class) == (
            name,
            algorithm,
            hsm_pb2.KEY_CLASS_KEY_PAIR,
        )
        assert info.sensitive and not info.extractable and info.local
        code, reason, meta = rpc_error(
            stub.GenerateKey, hsm_pb2.GenerateKeyRequest(label=name, algorithm=algorithm)
        )
        assert (code, reason, meta) == (grpc.StatusCode.ALREADY_EXISTS, "KEY_EXISTS", {"key": name})
        digest = hashlib.new(sign_with.rsplit("_", 1)[1].lower(), b"m").digest()
        alg = common_pb2.SignatureAlgorithm.Value("SIGNATURE_ALGORITHM_" + sign_with)
        signature = stub.Sign(
            hsm_pb2.HsmServiceSignRequest(
                key=hsm_pb2.KeyRef(id=info.id), algorithm=alg, digest=digest
            )
        ).signature
        verify(public_key(stub, label(name)), sign_with, signature, digest)
    finally:
        assert stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=label(name))).deleted_objects == 2
    code, reason, _ = rpc_error(
        stub.Sign, hsm_pb2.HsmServiceSignRequest(key=label(name), algorithm=alg, digest=digest)
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND")
    records = [r for r in hsmd.audit_records() if r.get("key") == name]
    assert [(r["action"], r["outcome"]) for r in records if r["action"] != "hsm.sign"] == [
        ("hsm.generate", "ok"),
        ("hsm.generate", "KEY_EXISTS"),
        ("hsm.delete", "ok"),
    ]


def test_generate_refusals(hsmd) -> None:
    stub = hsmd.stub()
    cases = [
        (hsm_pb2.GenerateKeyRequest(algorithm=K.KEY_ALGORITHM_EC_P256), "label"),
        (
            hsm_pb2.GenerateKeyRequest(label=new_label("x"), algorithm=K.KEY_ALGORITHM_RSA_1024),
            "algorithm",
        ),
        (
            hsm_pb2.GenerateKeyRequest(
                label=new_label("x"), algorithm=K.KEY_ALGORITHM_EC_P256, extractable=True
            ),
            "extractable",
        ),
        (
            hsm_pb2.GenerateKeyRequest(
                label=new_label("x"), algorithm=K.KEY_ALGORITHM_AES_128, ephemeral=True
            ),
            "ephemeral",
        ),
    ]
    for request, field in cases:
        assert rpc_error(stub.GenerateKey, request) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            {"field": field},
        )
    _code, reason, meta = rpc_error(
        hsmd.stub("enrollment").GenerateKey,
        hsm_pb2.GenerateKeyRequest(label="issuing-ca", algorithm=K.KEY_ALGORITHM_EC_P256),
    )
    assert (reason, meta) == ("POLICY_DENIED", {"rule": "create"})  # the new label is checked first


def test_ecdh_derive_equals_cryptography(hsmd) -> None:
    stub = hsmd.stub()
    ours = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _point(stub, "ecdh-p256"))
    peer = ec.generate_private_key(ec.SECP256R1())
    expected = peer.exchange(ec.ECDH(), ours)
    spki = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    point = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    for peer_bytes in (spki, point):
        reply = stub.Derive(
            hsm_pb2.DeriveRequest(
                base_key=label("ecdh-p256"),
                **ecdh(peer_bytes),
                template=hsm_pb2.DerivedKeyTemplate(extractable=True),
                return_value=True,
            )
        )
        assert reply.value == expected
        assert reply.key.algorithm == K.KEY_ALGORITHM_AES_256 and not reply.key.persistent
    records = [
        r for r in hsmd.audit_records() if r["action"] == "hsm.derive" and r["key"] == "ecdh-p256"
    ]
    assert records and all(expected.hex() not in str(r) for r in records)


def _point(stub, name: str) -> bytes:  # type: ignore[no-untyped-def]
    public = public_key(stub, label(name))
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def test_derive_value_needs_the_derive_value_rule(hsmd) -> None:
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = peer.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request = hsm_pb2.DeriveRequest(
        base_key=label("ecdh-p256"),
        **ecdh(spki),
        template=hsm_pb2.DerivedKeyTemplate(extractable=True),
        return_value=True,
    )
    assert rpc_error(hsmd.stub("enrollment").Derive, request) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "POLICY_DENIED",
        {"rule": "key"},
    )
    master = hsm_pb2.DeriveRequest(
        base_key=label("activation-master"),
        **diversify(ECB, bytes(32)),
        template=hsm_pb2.DerivedKeyTemplate(extractable=True),
        return_value=True,
    )
    assert (
        rpc_error(hsmd.stub().Derive, master)[1] == "POLICY_DENIED"
    )  # no derive-value rule for it
    request.template.extractable = False
    assert rpc_error(hsmd.stub().Derive, request)[2] == {"field": "template.extractable"}


def test_diversify_activation_master_into_a_key_reference(hsmd, cleanup) -> None:
    stub, name = hsmd.stub("enrollment"), new_label("act")
    cleanup.append(name)
    reply = stub.Derive(
        hsm_pb2.DeriveRequest(
            base_key=label("activation-master"),
            **diversify(ECB, b"enrollment-00042".ljust(32, b"\0")),
            template=hsm_pb2.DerivedKeyTemplate(label=name, persistent=True),
        )
    )
    assert not reply.value
    key = reply.key
    assert (key.label, key.key_class, key.algorithm) == (
        name,
        hsm_pb2.KEY_CLASS_SECRET_KEY,
        K.KEY_ALGORITHM_AES_256,
    )
    assert key.persistent and key.sensitive and not key.extractable
    assert name in {
        k.label
        for k in hsmd.stub().ListKeys(hsm_pb2.ListKeysRequest(label_pattern="svc-act-*")).keys
    }


@pytest.mark.parametrize("mechanism", [ECB, CBC])
def test_diversified_value_equals_aes_of_the_data(hsmd, testbed, cleanup, mechanism: str) -> None:
    stub, master = hsmd.stub(), new_label("master")
    cleanup.append(master)
    stub.GenerateKey(
        hsm_pb2.GenerateKeyRequest(
            label=master, algorithm=K.KEY_ALGORITHM_AES_256, extractable=True
        )
    )
    value = secret_value(testbed, master)
    data, iv = os.urandom(32), os.urandom(16)
    reply = stub.Derive(
        hsm_pb2.DeriveRequest(
            base_key=label(master),
            **diversify(mechanism, data, iv),
            template=hsm_pb2.DerivedKeyTemplate(extractable=True),
            return_value=True,
        )
    )
    mode = modes.CBC(iv) if mechanism == CBC else modes.ECB()
    encryptor = Cipher(algorithms.AES(value), mode).encryptor()
    assert reply.value == encryptor.update(data) + encryptor.finalize()
    short = stub.Derive(
        hsm_pb2.DeriveRequest(
            base_key=label(master),
            **diversify(mechanism, data, iv),
            template=hsm_pb2.DerivedKeyTemplate(
                extractable=True, algorithm=K.KEY_ALGORITHM_AES_128
            ),
            return_value=True,
        )
    )
    assert short.value == reply.value[:16] and short.key.algorithm == K.KEY_ALGORITHM_AES_128


def test_derive_refusals(hsmd) -> None:
    stub = hsmd.stub()
    base = hsm_pb2.DeriveRequest(
        base_key=label("activation-master"),
        **diversify(ECB, bytes(32)),
        template=hsm_pb2.DerivedKeyTemplate(label="svc-never", persistent=True),
    )
    bad: list[tuple[dict[str, object], str | None]] = [
        ({"mechanism": None}, "mechanism"),
        (diversify(ECB, bytes(20)), None),
        (diversify(CBC, bytes(32)), None),  # no iv
        (diversify(ECB, b""), "aes_ecb_encrypt_data.data"),
        (ecdh(b""), "ecdh.peer_public_key"),
        (dict(template=hsm_pb2.DerivedKeyTemplate()), "template.persistent"),
        (dict(template=hsm_pb2.DerivedKeyTemplate(persistent=True)), "template.label"),
        (
            dict(
                template=hsm_pb2.DerivedKeyTemplate(
                    label="x", persistent=True, algorithm=K.KEY_ALGORITHM_RSA_2048
                )
            ),
            "template.algorithm",
        ),
        (ecdh(_point(stub, "ecdh-p256")), None),  # on an AES key
    ]
    for change, field in bad:
        request = hsm_pb2.DeriveRequest()
        request.CopyFrom(base)
        for k, v in change.items():
            if v is None:
                request.ClearField(k)
            else:
                getattr(request, k).CopyFrom(v)
                getattr(request, k).SetInParent()  # an empty case is still the case
        code, reason, meta = rpc_error(stub.Derive, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (change, reason)
        if "ecdh" in change and change["ecdh"].peer_public_key:  # type: ignore[attr-defined]
            assert reason == "ALGORITHM_MISMATCH"
        if field is not None:
            assert meta == {"field": field}, change
    assert "svc-never" not in {k.label for k in stub.ListKeys(hsm_pb2.ListKeysRequest()).keys}


def test_delete_unknown_and_denied(hsmd) -> None:
    assert (
        rpc_error(hsmd.stub().DeleteKey, hsm_pb2.DeleteKeyRequest(key=label("svc-nothing")))[1]
        == "KEY_NOT_FOUND"
    )
    _code, reason, meta = rpc_error(
        hsmd.stub("enrollment").DeleteKey, hsm_pb2.DeleteKeyRequest(key=label("issuing-ca"))
    )
    # A key the caller may not use looks like no key at all.
    assert (reason, meta) == ("KEY_NOT_FOUND", {"key": "issuing-ca"})


def test_derive_with_a_sign_only_key_is_key_usage_not_allowed(hsmd, cleanup) -> None:
    stub, name = hsmd.stub(), new_label("signonly")
    request = hsm_pb2.GenerateKeyRequest(
        label=name, algorithm=K.KEY_ALGORITHM_EC_P256, usages=[hsm_pb2.KEY_USAGE_SIGN]
    )
    info = stub.GenerateKey(request).key
    cleanup.append(name)
    # What the token set, read back: the asked usage and its counterpart, no derive.
    assert {hsm_pb2.KEY_USAGE_SIGN, hsm_pb2.KEY_USAGE_VERIFY} <= set(info.usages)
    assert hsm_pb2.KEY_USAGE_DERIVE not in info.usages
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = peer.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    derive = hsm_pb2.DeriveRequest(
        base_key=label(name),
        **ecdh(point),
        template=hsm_pb2.DerivedKeyTemplate(extractable=True),
        return_value=True,
    )
    assert rpc_error(stub.Derive, derive) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "KEY_USAGE_NOT_ALLOWED",
        {"key": name, "usage": "derive"},
    )
