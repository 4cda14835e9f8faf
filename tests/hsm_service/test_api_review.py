"""The hwgate.v1 review's promises for HsmService (issue #17): no silent choices.

A request that leaves the token empty while the daemon serves several is
refused (TOKEN_AMBIGUOUS), the Sign/SignStream ``input`` and the Derive
``mechanism`` are oneofs whose wrong or missing case is INVALID_ARGUMENT, and a
failed SignStream item carries the same google.rpc.Status, ErrorInfo metadata
included, that a unary Sign fails with.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from hsm_service_support import HsmDaemon, label, start_hsm_daemon

from hwgate.errors import REASON_CLASSES, from_status_message
from hwgate.v1 import common_pb2, hsm_pb2
from support.daemon import error_info

pytestmark = pytest.mark.testbed

ECDSA = common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256
HMAC = common_pb2.SIGNATURE_ALGORITHM_HMAC_SHA256
DIGEST = hashlib.sha256(b"api review").digest()


def rpc_error(call, request) -> tuple[grpc.StatusCode, str, dict[str, str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return error_info(caught.value)


@pytest.fixture
def two_tokens(testbed: object, tmp_path: Path) -> Iterator[HsmDaemon]:
    """A daemon serving the test bed token under two names ("testbed", "second")."""
    daemon = start_hsm_daemon(tmp_path / "d", testbed, extra_tokens=("second",))
    yield daemon
    daemon.proc.stop(signal.SIGTERM)


def test_an_empty_token_with_several_configured_is_ambiguous(two_tokens: HsmDaemon) -> None:
    stub = two_tokens.stub()
    sign = hsm_pb2.HsmServiceSignRequest(key=label("signer-p256"), algorithm=ECDSA, digest=DIGEST)
    assert rpc_error(stub.Sign, sign) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOKEN_AMBIGUOUS",
        {"field": "key.token", "tokens": "testbed,second"},
    )
    generate = hsm_pb2.GenerateKeyRequest(
        label="never-made", algorithm=common_pb2.KEY_ALGORITHM_EC_P256, ephemeral=True
    )
    code, reason, metadata = rpc_error(stub.GenerateKey, generate)
    assert (code, reason, metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOKEN_AMBIGUOUS",
        "token",
    )
    # Named, either token answers; a listing without a token filter spans both.
    for token in ("testbed", "second"):
        sign.key.token = token
        assert stub.Sign(sign, timeout=30).signature
    listed = stub.ListKeys(hsm_pb2.ListKeysRequest(label_pattern="signer-p256"), timeout=30)
    assert sorted(k.token for k in listed.keys) == ["second", "testbed"]


def test_one_token_may_stay_unnamed(hsmd: HsmDaemon) -> None:
    sign = hsm_pb2.HsmServiceSignRequest(key=label("signer-p256"), algorithm=ECDSA, digest=DIGEST)
    assert hsmd.stub().Sign(sign, timeout=30).signature


@pytest.mark.parametrize(
    ("key", "algorithm", "input"),
    [
        ("signer-p256", ECDSA, {}),  # no input at all
        ("signer-p256", ECDSA, {"data": DIGEST}),  # data for a digest algorithm
        ("hmac-key", HMAC, {"digest": DIGEST}),  # a digest for HMAC
    ],
    ids=["unset", "data-for-ecdsa", "digest-for-hmac"],
)
def test_sign_input_oneof_case_must_fit_the_algorithm(
    hsmd: HsmDaemon, key: str, algorithm: int, input: dict[str, bytes]
) -> None:
    request = hsm_pb2.HsmServiceSignRequest(key=label(key), algorithm=algorithm, **input)  # type: ignore[arg-type]
    assert rpc_error(hsmd.stub().Sign, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"field": "input"},
    )
    stream = hsm_pb2.SignStreamRequest(request_id=1, key=label(key), algorithm=algorithm, **input)  # type: ignore[arg-type]
    (response,) = hsmd.stub().SignStream(iter([stream]), timeout=30)
    error = from_status_message(response.error)
    assert (error.code, error.reason, error.metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"field": "input"},
    )


def test_an_empty_hmac_data_is_still_the_data_case(hsmd: HsmDaemon) -> None:
    request = hsm_pb2.HsmServiceSignRequest(key=label("hmac-key"), algorithm=HMAC, data=b"")
    assert request.WhichOneof("input") == "data"
    assert len(hsmd.stub().Sign(request, timeout=30).signature) == 32


def test_a_failed_stream_item_carries_the_unary_status(hsmd: HsmDaemon) -> None:
    """Code, message, and an ErrorInfo with domain, reason and metadata (expected_length)."""
    stub = hsmd.stub()
    short = DIGEST[:20]
    unary = hsm_pb2.HsmServiceSignRequest(key=label("signer-p256"), algorithm=ECDSA, digest=short)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Sign(unary, timeout=30)
    item = hsm_pb2.SignStreamRequest(
        request_id=7, key=label("signer-p256"), algorithm=ECDSA, digest=short
    )
    (response,) = stub.SignStream(iter([item]), timeout=30)
    assert response.request_id == 7 and response.WhichOneof("result") == "error"
    status = response.error
    assert status.code == caught.value.code().value[0]
    assert status.message == caught.value.details()
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    assert (info.domain, info.reason, dict(info.metadata)) == (
        "hwgate.v1",
        "INVALID_DIGEST",
        {"expected_length": "32"},
    )
    assert error_info(caught.value)[1:] == (info.reason, dict(info.metadata))
    # The client library raises the same exception for both.
    raised = from_status_message(status)
    assert type(raised) is REASON_CLASSES["INVALID_DIGEST"]
    assert raised.metadata == {"expected_length": "32"}


def test_derive_without_a_mechanism_is_refused(hsmd: HsmDaemon) -> None:
    request = hsm_pb2.DeriveRequest(
        base_key=label("activation-master"),
        template=hsm_pb2.DerivedKeyTemplate(extractable=True),
        return_value=True,
    )
    assert request.WhichOneof("mechanism") is None
    assert rpc_error(hsmd.stub().Derive, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"field": "mechanism"},
    )
