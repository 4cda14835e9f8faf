"""Hidden keys look missing, and only the `create` grant mints new persistent keys.

Issue 14 items 7 and 8, through a real hwgated. In ``hsm_service_support``'s
policy the enrollment role may use every key but ``issuing-ca`` and may create
none; the admin may use and create every key.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
from hsm_service_support import label

from hwgate.errors import from_status_message
from hwgate.v1 import common_pb2, hsm_pb2

pytestmark = pytest.mark.testbed

RSA256 = common_pb2.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256


def ecb(data: bytes) -> hsm_pb2.AesEcbEncryptDataDerivation:
    return hsm_pb2.AesEcbEncryptDataDerivation(data=data)


def failure(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, dict[str, str], str]:
    """(code, reason, metadata, message) of a call that must fail."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    with pytest.raises(grpc.RpcError) as err:
        call()
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return err.value.code(), info.reason, dict(info.metadata), err.value.details()
    raise AssertionError("no ErrorInfo")


def _shape(answer: tuple[grpc.StatusCode, str, dict[str, str], str], reference: str) -> object:
    """The answer with the caller's own reference masked: what must not differ."""
    code, reason, metadata, message = answer
    masked = {k: v.replace(reference, "<ref>") for k, v in metadata.items()}
    return code, reason, masked, message.replace(reference, "<ref>")


def _calls(stub, ref: hsm_pb2.KeyRef) -> dict[str, Callable[[], object]]:  # type: ignore[no-untyped-def]
    """Every HsmService RPC that takes a key reference, aimed at *ref*."""

    def stream() -> object:
        request = hsm_pb2.SignStreamRequest(
            request_id=1, key=ref, algorithm=RSA256, digest=bytes(32)
        )
        (response,) = list(stub.SignStream(iter([request]), timeout=30))
        return response.error

    return {
        "GetPublicKey": lambda: stub.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=ref)),
        "Sign": lambda: stub.Sign(
            hsm_pb2.HsmServiceSignRequest(key=ref, algorithm=RSA256, digest=bytes(32))
        ),
        "Derive": lambda: stub.Derive(
            hsm_pb2.DeriveRequest(
                base_key=ref,
                aes_ecb_encrypt_data=ecb(bytes(16)),
                template=hsm_pb2.DerivedKeyTemplate(extractable=True),
                return_value=True,
            )
        ),
        "DeleteKey": lambda: stub.DeleteKey(hsm_pb2.DeleteKeyRequest(key=ref)),
        "SignStream": stream,
    }


def test_a_hidden_key_answers_like_a_missing_one_by_label_id_and_uri(hsmd) -> None:  # type: ignore[no-untyped-def]
    admin, enrollment = hsmd.stub(), hsmd.stub("enrollment")
    ca_id = admin.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=label("issuing-ca"))).key.id
    missing_id = uuid.uuid4().bytes
    pairs = [
        ("label", label("issuing-ca"), "issuing-ca", label("no-such-key-x"), "no-such-key-x"),
        (
            "id",
            hsm_pb2.KeyRef(id=ca_id),
            "id:" + ca_id.hex(),
            hsm_pb2.KeyRef(id=missing_id),
            "id:" + missing_id.hex(),
        ),
        (
            "uri",
            hsm_pb2.KeyRef(uri=f"pkcs11:id=%{'%'.join(f'{b:02x}' for b in ca_id)}"),
            None,
            hsm_pb2.KeyRef(uri="pkcs11:object=no-such-key-x"),
            None,
        ),
    ]
    for kind, hidden, hidden_text, missing, missing_text in pairs:
        hidden_text = hidden_text or hidden.uri
        missing_text = missing_text or missing.uri
        hidden_calls, missing_calls = _calls(enrollment, hidden), _calls(enrollment, missing)
        for rpc in hidden_calls:
            if rpc == "SignStream":
                h = from_status_message(hidden_calls[rpc]())  # type: ignore[arg-type]
                m = from_status_message(missing_calls[rpc]())  # type: ignore[arg-type]
                assert (h.code, h.reason) == (grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND"), kind
                assert (m.code, m.reason, set(m.metadata)) == (h.code, h.reason, set(h.metadata))
                assert "issuing-ca" not in str(h) + repr(h.metadata) or kind == "label"
                continue
            h_answer = failure(hidden_calls[rpc])
            m_answer = failure(missing_calls[rpc])
            assert h_answer[:2] == (grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND"), (kind, rpc)
            assert _shape(h_answer, hidden_text) == _shape(m_answer, missing_text), (kind, rpc)
            if kind != "label":  # the caller never wrote the label: it must not appear
                assert "issuing-ca" not in repr(h_answer), (kind, rpc)
    # The key is there, and usable by the role allowed to.
    assert admin.Sign(
        hsm_pb2.HsmServiceSignRequest(
            key=hsm_pb2.KeyRef(id=ca_id), algorithm=RSA256, digest=bytes(32)
        )
    ).signature
    # The administrator still learns from the audit log what really happened.
    records = [r for r in hsmd.audit_records() if r.get("role") == "enrollment"]
    outcomes = {(r["key"], r["outcome"]) for r in records if r["action"] == "hsm.sign"}
    assert ("issuing-ca", "POLICY_DENIED") in outcomes
    assert ("id:" + ca_id.hex(), "POLICY_DENIED") in outcomes
    assert ("id:" + missing_id.hex(), "KEY_NOT_FOUND") in outcomes


@pytest.fixture
def created(hsmd) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    labels: list[str] = []
    yield labels
    for name in labels:
        with contextlib.suppress(grpc.RpcError):
            hsmd.stub().DeleteKey(hsm_pb2.DeleteKeyRequest(key=label(name)))


def _derive_persistent(new_label: str) -> hsm_pb2.DeriveRequest:
    return hsm_pb2.DeriveRequest(
        base_key=label("activation-master"),
        aes_ecb_encrypt_data=ecb(bytes(32)),
        template=hsm_pb2.DerivedKeyTemplate(label=new_label, persistent=True, extractable=True),
    )


def test_only_the_create_grant_mints_persistent_keys(hsmd, created) -> None:  # type: ignore[no-untyped-def]
    admin, enrollment = hsmd.stub(), hsmd.stub("enrollment")
    squat = f"signer-zz-{uuid.uuid4().hex[:6]}"  # a name the enrollment role may *use*
    created.append(squat)
    denied = (grpc.StatusCode.PERMISSION_DENIED, "POLICY_DENIED", {"rule": "create"})
    assert failure(lambda: enrollment.Derive(_derive_persistent(squat)))[:3] == denied
    generate = hsm_pb2.GenerateKeyRequest(label=squat, algorithm=common_pb2.KEY_ALGORITHM_EC_P256)
    assert failure(lambda: enrollment.GenerateKey(generate))[:3] == denied
    labels = {k.label for k in admin.ListKeys(hsm_pb2.ListKeysRequest()).keys}
    assert squat not in labels  # nothing was created
    # The admin holds the grant.
    reply = admin.Derive(_derive_persistent(squat))
    assert reply.key.label == squat and reply.key.persistent
