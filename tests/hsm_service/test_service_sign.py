"""Sign and SignStream through a real hwgated on the test bed token, checked with cryptography."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

import grpc
import pytest
from hsm_service_support import label, public_key, verify
from hsm_values import secret_value

from hwgate.errors import from_status_message
from hwgate.v1 import common_pb2, hsm_pb2
from support.daemon import error_info

pytestmark = pytest.mark.testbed

A = common_pb2.SignatureAlgorithm


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        ("signer-p256", "ECDSA_SHA256"),
        ("signer-p256", "ECDSA_SHA384"),
        *[
            ("signer-rsa", f"RSA_{p}_{h}")
            for p in ("PKCS1", "PSS")
            for h in ("SHA256", "SHA384", "SHA512")
        ],
        ("issuing-ca", "RSA_PKCS1_SHA256"),
    ],
)
def test_every_algorithm_verifies_against_get_public_key(hsmd, key: str, algorithm: str) -> None:
    stub = hsmd.stub()
    hash_name = algorithm.rsplit("_", 1)[1].lower()
    digest = hashlib.new(hash_name, os.urandom(40)).digest()
    reply = stub.Sign(
        hsm_pb2.HsmServiceSignRequest(
            key=label(key), algorithm=A.Value(f"SIGNATURE_ALGORITHM_{algorithm}"), digest=digest
        )
    )
    verify(public_key(stub, label(key)), algorithm, reply.signature, digest)
    assert reply.key_uri.startswith("pkcs11:token=hwgate-testbed;object=" + key)


def test_hmac_matches_the_key_value(hsmd, testbed) -> None:
    """A generated extractable generic secret: the HMAC equals Python's over its value."""
    stub = hsmd.stub()
    name = f"svc-hmac-{uuid.uuid4().hex[:8]}"
    stub.GenerateKey(
        hsm_pb2.GenerateKeyRequest(
            label=name, algorithm=common_pb2.KEY_ALGORITHM_GENERIC_SECRET, extractable=True
        )
    )
    try:
        value = secret_value(testbed, name)
        data = os.urandom(300)
        mac = stub.Sign(
            hsm_pb2.HsmServiceSignRequest(
                key=label(name), algorithm=A.SIGNATURE_ALGORITHM_HMAC_SHA256, data=data
            )
        ).signature
        assert mac == hmac.new(value, data, hashlib.sha256).digest()
    finally:
        stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=label(name)))


def test_testbed_hmac_key_is_deterministic(hsmd) -> None:
    """hmac-key is not extractable: its MACs are checked for length and determinism."""
    stub = hsmd.stub("enrollment")
    macs = [
        stub.Sign(
            hsm_pb2.HsmServiceSignRequest(
                key=label("hmac-key"), algorithm=A.SIGNATURE_ALGORITHM_HMAC_SHA256, data=d
            )
        ).signature
        for d in (b"enrollment-1", b"enrollment-1", b"enrollment-2")
    ]
    assert len(macs[0]) == 32 and macs[0] == macs[1] != macs[2]


def test_uri_and_id_references_resolve_to_the_same_key(hsmd) -> None:
    stub = hsmd.stub()
    public = public_key(stub, label("signer-p256"))
    key_id = stub.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=label("signer-p256"))).key.id
    refs = [
        hsm_pb2.KeyRef(uri="pkcs11:token=hwgate-testbed;object=signer-p256;type=private"),
        hsm_pb2.KeyRef(uri="pkcs11:object=signer-p256"),
        hsm_pb2.KeyRef(id=key_id),
        hsm_pb2.KeyRef(token="testbed", label="signer-p256"),
    ]
    for ref in refs:
        digest = hashlib.sha256(ref.SerializeToString()).digest()
        reply = stub.Sign(
            hsm_pb2.HsmServiceSignRequest(
                key=ref, algorithm=A.SIGNATURE_ALGORITHM_ECDSA_SHA256, digest=digest
            )
        )
        verify(public, "ECDSA_SHA256", reply.signature, digest)


def _sign_error(stub, **fields):  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        stub.Sign(hsm_pb2.HsmServiceSignRequest(**fields))
    return error_info(err.value)


def test_bad_inputs_get_status_and_reason(hsmd) -> None:
    stub = hsmd.stub()
    d32 = bytes(32)
    ecdsa = A.SIGNATURE_ALGORITHM_ECDSA_SHA256
    code, reason, meta = _sign_error(stub, key=label("no-such-key"), algorithm=ecdsa, digest=d32)
    assert (code, reason, meta.get("key")) == (
        grpc.StatusCode.NOT_FOUND,
        "KEY_NOT_FOUND",
        "no-such-key",
    )
    code, reason, meta = _sign_error(
        stub, key=label("signer-p256"), algorithm=ecdsa, digest=bytes(20)
    )
    assert (code, reason, meta) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_DIGEST",
        {"expected_length": "32"},
    )
    code, reason, meta = _sign_error(
        stub, key=label("signer-rsa"), algorithm=A.SIGNATURE_ALGORITHM_RSA_PSS_SHA512, digest=d32
    )
    assert (reason, meta) == ("INVALID_DIGEST", {"expected_length": "64"})
    code, reason, _ = _sign_error(stub, key=label("signer-rsa"), algorithm=ecdsa, digest=d32)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ALGORITHM_MISMATCH")
    code, reason, _ = _sign_error(stub, key=label("hmac-key"), algorithm=ecdsa, digest=d32)
    assert reason == "ALGORITHM_MISMATCH"
    code, reason, meta = _sign_error(stub, algorithm=ecdsa, digest=d32)
    assert (code, reason, meta) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"field": "key"},
    )
    code, reason, meta = _sign_error(stub, key=label("signer-p256"), digest=d32)
    assert (reason, meta) == ("INVALID_ARGUMENT", {"field": "algorithm"})
    code, reason, _ = _sign_error(
        stub, key=hsm_pb2.KeyRef(uri="pkcs11:object=x?pin-value=1234"), algorithm=ecdsa, digest=d32
    )
    assert reason == "INVALID_ARGUMENT"
    code, reason, meta = _sign_error(
        stub, key=hsm_pb2.KeyRef(token="nope", label="signer-p256"), algorithm=ecdsa, digest=d32
    )
    assert (reason, meta) == ("INVALID_ARGUMENT", {"field": "key.token"})


def test_policy_denies_keys_per_role_even_by_id(hsmd) -> None:
    admin, enrollment = hsmd.stub(), hsmd.stub("enrollment")
    ca_id = admin.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=label("issuing-ca"))).key.id
    digest = bytes(32)
    rsa256 = A.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256
    for ref in (
        label("issuing-ca"),
        hsm_pb2.KeyRef(id=ca_id),
        hsm_pb2.KeyRef(uri=f"pkcs11:id=%{ca_id.hex()}"),
    ):
        code, reason, _meta = _sign_error(enrollment, key=ref, algorithm=rsa256, digest=digest)
        # A key the caller may not use looks missing (test_key_visibility has the details).
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND")
    assert enrollment.Sign(
        hsm_pb2.HsmServiceSignRequest(key=label("signer-rsa"), algorithm=rsa256, digest=digest)
    ).signature
    code, reason, meta = _sign_error(
        hsmd.stub("kiosk"), key=label("signer-rsa"), algorithm=rsa256, digest=digest
    )
    assert (reason, meta) == ("POLICY_DENIED", {"rule": "rpc"})


def test_sign_is_audited_with_a_short_digest_print(hsmd) -> None:
    digest = hashlib.sha256(uuid.uuid4().bytes).digest()
    stub = hsmd.stub("enrollment")
    stub.Sign(
        hsm_pb2.HsmServiceSignRequest(
            key=label("signer-p256"), algorithm=A.SIGNATURE_ALGORITHM_ECDSA_SHA256, digest=digest
        )
    )
    _sign_error(
        stub,
        key=label("issuing-ca"),
        algorithm=A.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256,
        digest=digest,
    )
    print_ = hashlib.sha256(digest).hexdigest()[:8]
    records = [r for r in hsmd.audit_records() if r.get("digest_sha256") == print_]
    assert [(r["action"], r["key"], r["outcome"], r["role"]) for r in records] == [
        ("hsm.sign", "signer-p256", "ok", "enrollment"),
        ("hsm.sign", "issuing-ca", "POLICY_DENIED", "enrollment"),
    ]
    assert records[0]["algorithm"] == "ECDSA_SHA256"
    assert digest.hex() not in hsmd.audit_records().__repr__()


def _stream(stub, requests):  # type: ignore[no-untyped-def]
    return list(stub.SignStream(iter(requests), timeout=60))


def test_sign_stream_1000_in_order(hsmd) -> None:
    stub = hsmd.stub()
    public = public_key(stub, label("signer-p256"))
    digests = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1000)]
    ids = [7 * i + 3 for i in range(1000)]
    requests = [
        hsm_pb2.SignStreamRequest(
            request_id=rid,
            key=label("signer-p256"),
            algorithm=A.SIGNATURE_ALGORITHM_ECDSA_SHA256,
            digest=d,
        )
        for rid, d in zip(ids, digests, strict=True)
    ]
    responses = _stream(stub, requests)
    assert [r.request_id for r in responses] == ids
    for response, digest in zip(responses, digests, strict=True):
        assert not response.HasField("error")
        verify(public, "ECDSA_SHA256", response.signature, digest)


def test_sign_stream_batches_verify_in_order(hsmd) -> None:
    stub = hsmd.stub()
    ecdsa = A.SIGNATURE_ALGORITHM_ECDSA_SHA256
    public = public_key(stub, label("signer-p256"))
    batches = [[hashlib.sha256(f"{b}/{i}".encode()).digest() for i in range(200)] for b in range(5)]
    requests = [
        hsm_pb2.SignStreamRequest(
            request_id=b,
            key=label("signer-p256"),
            algorithm=ecdsa,
            digest_batch=hsm_pb2.DigestBatch(digests=digests),
        )
        for b, digests in enumerate(batches)
    ]
    bad = hsm_pb2.SignStreamRequest(
        request_id=99,
        key=label("signer-p256"),
        algorithm=ecdsa,
        digest_batch=hsm_pb2.DigestBatch(digests=[]),
    )
    responses = _stream(stub, [*requests, bad])
    assert [r.request_id for r in responses] == [0, 1, 2, 3, 4, 99]
    for response, digests in zip(responses, batches, strict=False):
        assert response.WhichOneof("result") == "signature_batch"
        assert len(response.signature_batch.signatures) == len(digests)
        for signature, digest in zip(response.signature_batch.signatures, digests, strict=True):
            verify(public, "ECDSA_SHA256", signature, digest)
    error = from_status_message(responses[-1].error)
    assert (error.reason, error.metadata["field"]) == ("INVALID_ARGUMENT", "digest_batch.digests")


def test_sign_stream_reports_failures_per_item_and_goes_on(hsmd) -> None:
    stub = hsmd.stub("enrollment")
    ecdsa, pss = A.SIGNATURE_ALGORITHM_ECDSA_SHA256, A.SIGNATURE_ALGORITHM_RSA_PSS_SHA256
    d = hashlib.sha256(b"x").digest()
    plan = [
        ("signer-p256", ecdsa, d, None),
        ("signer-p256", ecdsa, d[:20], "INVALID_DIGEST"),
        ("signer-p256", ecdsa, d, None),
        ("issuing-ca", A.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256, d, "KEY_NOT_FOUND"),
        ("signer-rsa", pss, d, None),
        ("signer-rsa", ecdsa, d, "ALGORITHM_MISMATCH"),
        ("no-such-key", ecdsa, d, "KEY_NOT_FOUND"),
        ("signer-rsa", 0, d, "INVALID_ARGUMENT"),
        ("signer-p256", ecdsa, d, None),
    ]
    requests = [
        hsm_pb2.SignStreamRequest(request_id=i, key=label(k), algorithm=a, digest=dg)
        for i, (k, a, dg, _) in enumerate(plan)
    ]
    responses = _stream(stub, requests)
    assert [r.request_id for r in responses] == list(range(len(plan)))
    pubs = {k: public_key(hsmd.stub(), label(k)) for k in ("signer-p256", "signer-rsa")}
    for response, (key, algorithm, digest, expected) in zip(responses, plan, strict=True):
        if expected is None:
            assert not response.HasField("error"), response
            name = A.Name(algorithm).removeprefix("SIGNATURE_ALGORITHM_")
            verify(pubs[key], name, response.signature, digest)
        else:
            assert response.WhichOneof("result") == "error"
            assert from_status_message(response.error).reason == expected
    hidden, missing = responses[3].error, responses[6].error
    assert hidden.code == missing.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert hidden.message.replace("issuing-ca", "?") == missing.message.replace("no-such-key", "?")


def test_sign_stream_empty_stream_ends_cleanly(hsmd) -> None:
    assert _stream(hsmd.stub(), []) == []


def test_sign_stream_mixed_keys_stay_in_order(hsmd) -> None:
    stub = hsmd.stub()
    keys = ["signer-p256", "signer-rsa"]
    algs = {
        "signer-p256": A.SIGNATURE_ALGORITHM_ECDSA_SHA256,
        "signer-rsa": A.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256,
    }
    pubs = {k: public_key(stub, label(k)) for k in keys}
    plan = [(keys[(i // 3) % 2], hashlib.sha256(bytes([i])).digest()) for i in range(120)]
    requests = [
        hsm_pb2.SignStreamRequest(request_id=i, key=label(k), algorithm=algs[k], digest=d)
        for i, (k, d) in enumerate(plan)
    ]
    responses = _stream(stub, requests)
    assert [r.request_id for r in responses] == list(range(120))
    for response, (key, digest) in zip(responses, plan, strict=True):
        verify(
            pubs[key],
            A.Name(algs[key]).removeprefix("SIGNATURE_ALGORITHM_"),
            response.signature,
            digest,
        )
