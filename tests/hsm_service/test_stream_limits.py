"""SignStream's edges (issue 15 items 2 and 3), through a real hwgated.

An undecodable request ends the stream with INVALID_ARGUMENT after the answers
to the requests before it; and bulk streams of 1024-digest batches do not
starve unary Signs (each must finish well inside the 10 s deadline that used
to expire).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.message import DecodeError
from hsm_service_support import HsmDaemon, label

from hwgate.v1 import common_pb2, hsm_pb2

pytestmark = pytest.mark.testbed

ECDSA = common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256
SIGN_STREAM = "/hwgate.v1.HsmService/SignStream"
GARBAGE = b"\xff\xff\xff\xff"  # field number 0x0fffffff..., wire type 7: not protobuf


def _request(request_id: int, digest: bytes) -> bytes:
    return hsm_pb2.SignStreamRequest(
        request_id=request_id, key=label("signer-p256"), algorithm=ECDSA, digest=digest
    ).SerializeToString()


def test_an_undecodable_request_ends_the_stream_with_invalid_argument(hsmd: HsmDaemon) -> None:
    with pytest.raises(DecodeError):
        hsm_pb2.SignStreamRequest.FromString(GARBAGE)
    digest = hashlib.sha256(b"frame").digest()
    call = hsmd.channel().stream_stream(SIGN_STREAM, None, None)
    responses: list[hsm_pb2.SignStreamResponse] = []
    with pytest.raises(grpc.RpcError) as err:
        for raw in call(iter([_request(1, digest), GARBAGE, _request(3, digest)]), timeout=30):
            responses.append(hsm_pb2.SignStreamResponse.FromString(raw))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    # The request before the bad frame was answered; nothing after it was read.
    assert [r.request_id for r in responses] == [1]
    assert responses[0].signature


class _BulkStream:
    """A SignStream sending 1024-digest batches until stopped, on its own thread."""

    def __init__(self, channel: grpc.Channel, seed: int) -> None:
        self._channel = channel
        self._stop = threading.Event()
        self.answered = 0
        self.errors: list[str] = []
        self._call: grpc.Future | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(seed,), daemon=True)
        self._thread.start()

    def _requests(self, seed: int) -> Iterator[hsm_pb2.SignStreamRequest]:
        digests = [hashlib.sha256(f"{seed}/{i}".encode()).digest() for i in range(1024)]
        n = 0
        while not self._stop.is_set():
            n += 1
            yield hsm_pb2.SignStreamRequest(
                request_id=n,
                key=label("signer-p256"),
                algorithm=ECDSA,
                digest_batch=hsm_pb2.DigestBatch(digests=digests),
            )

    def _run(self, seed: int) -> None:
        stub_call = self._channel.stream_stream(
            SIGN_STREAM,
            request_serializer=hsm_pb2.SignStreamRequest.SerializeToString,
            response_deserializer=hsm_pb2.SignStreamResponse.FromString,
        )
        self._call = stub_call(self._requests(seed), timeout=600)
        self._started.set()
        try:
            for response in self._call:
                if response.HasField("error"):
                    self.errors.append(response.error.message)
                self.answered += 1
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.errors.append(f"{err.code()}: {err.details()}")

    def stop(self) -> None:
        self._stop.set()
        self._started.wait(10)
        if self._call is not None:
            self._call.cancel()
        self._thread.join(30)


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


def test_unary_signs_finish_while_two_bulk_streams_run(own_hsmd: HsmDaemon) -> None:
    stub = own_hsmd.stub()
    bulk = [_BulkStream(own_hsmd.channel(), seed) for seed in (1, 2)]
    try:
        # Both streams are being served (their first batches came back) before measuring.
        _wait_for(lambda: all(b.answered >= 1 for b in bulk), 120, "the bulk streams to run")
        for i in range(20):
            digest = hashlib.sha256(f"unary/{i}".encode()).digest()
            # The deadline that expired five times in a row before (issue 15 item 3).
            reply = stub.Sign(
                hsm_pb2.HsmServiceSignRequest(
                    key=label("signer-p256"), algorithm=ECDSA, digest=digest
                ),
                timeout=10,
            )
            assert reply.signature
        assert all(b.answered >= 1 and not b.errors for b in bulk), [b.errors for b in bulk]
    finally:
        for b in bulk:
            b.stop()
