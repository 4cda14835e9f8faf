"""Resource limits a hostile or buggy client runs into: message size, streams, sessions.

The security daemon runs with max_message_bytes = 64 KiB, at most 4 concurrent
streams per connection and 1 card session per identity (tests/security/conftest.py).
"""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import SecurityDaemon, failure, status_code

from hwgate.v1 import card_pb2, card_pb2_grpc, common_pb2, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed.paths import vpcd_reader

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
LIMIT = 65536


def assert_still_serving(secd: SecurityDaemon) -> None:
    with secd.unix_channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        readers = card_pb2_grpc.CardServiceStub(channel).ListReaders(
            card_pb2.ListReadersRequest(), timeout=10
        )
        assert readers.readers


def test_oversized_transmit_is_resource_exhausted(secd: SecurityDaemon) -> None:
    apdus = [b"\x00\xa4\x04\x00" + bytes([255]) + bytes(255)] * (LIMIT // 256 + 8)
    request = card_pb2.TransmitRequest(reader=vpcd_reader(0), apdus=apdus)
    assert request.ByteSize() > LIMIT
    with secd.unix_channel() as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        assert status_code(lambda: stub.Transmit(request, timeout=10)) == EXHAUSTED
    assert_still_serving(secd)


def test_oversized_hsm_sign_is_resource_exhausted(secd: SecurityDaemon) -> None:
    request = hsm_pb2.HsmServiceSignRequest(
        key=hsm_pb2.KeyRef(label="hmac-key"),
        algorithm=common_pb2.SIGNATURE_ALGORITHM_HMAC_SHA256,
        data=bytes(LIMIT + 1),
    )
    with secd.tls_channel("admin") as channel:
        stub = hsm_pb2_grpc.HsmServiceStub(channel)
        assert status_code(lambda: stub.Sign(request, timeout=10)) == EXHAUSTED
        # Just under the limit is not refused for its size.
        digest = hashlib.sha256(b"x").digest()
        ok = hsm_pb2.HsmServiceSignRequest(
            key=hsm_pb2.KeyRef(label="signer-p256"),
            algorithm=common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256,
            digest=digest,
        )
        assert stub.Sign(ok, timeout=15).signature
    assert_still_serving(secd)


def test_one_session_per_identity(secd: SecurityDaemon, cards: Any) -> None:
    cards.insert(0, "alice")
    cards.insert(1, "bob")
    with secd.unix_channel() as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        first = stub.OpenSession(card_pb2.OpenSessionRequest(reader=vpcd_reader(0)), timeout=10)
        try:
            second = card_pb2.OpenSessionRequest(reader=vpcd_reader(1))
            code, reason, meta = failure(lambda: stub.OpenSession(second, timeout=10))
            assert (code, reason, meta.get("max")) == (EXHAUSTED, "TOO_MANY_SESSIONS", "1")
            # Another identity (the mTLS kiosk) is counted separately.
            with secd.tls_channel("kiosk") as tls:
                other = card_pb2_grpc.CardServiceStub(tls).OpenSession(second, timeout=10)
                card_pb2_grpc.CardServiceStub(tls).CloseSession(
                    card_pb2.CloseSessionRequest(session_id=other.session_id), timeout=10
                )
        finally:
            stub.CloseSession(card_pb2.CloseSessionRequest(session_id=first.session_id))
        # Closing frees the slot for the same identity.
        again = stub.OpenSession(card_pb2.OpenSessionRequest(reader=vpcd_reader(1)), timeout=10)
        stub.CloseSession(card_pb2.CloseSessionRequest(session_id=again.session_id))


def own_connection(secd: SecurityDaemon) -> grpc.Channel:
    """A channel with its own subchannel pool, hence its own connection (its own stream budget)."""
    return grpc.insecure_channel(secd.proc.target, options=[("grpc.use_local_subchannel_pool", 1)])


def test_max_concurrent_streams_per_connection(secd: SecurityDaemon) -> None:
    """The 5th concurrent stream on one connection waits; another connection is not affected."""
    with own_connection(secd) as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        watches = [stub.WatchEvents(card_pb2.WatchEventsRequest()) for _ in range(4)]
        try:
            for watch in watches:
                next(watch)  # each stream is open and has delivered its snapshot
            extra = stub.WatchEvents(card_pb2.WatchEventsRequest(), timeout=2)
            # HTTP/2 MAX_CONCURRENT_STREAMS: the client holds the 5th stream back.
            assert status_code(lambda: next(extra)) == grpc.StatusCode.DEADLINE_EXCEEDED
            with own_connection(secd) as other:
                fresh = card_pb2_grpc.CardServiceStub(other).WatchEvents(
                    card_pb2.WatchEventsRequest(), timeout=10
                )
                assert next(fresh).snapshot
                fresh.cancel()
            watches.pop().cancel()
            admitted = stub.WatchEvents(card_pb2.WatchEventsRequest(), timeout=10)
            assert next(admitted).snapshot
            admitted.cancel()
        finally:
            for watch in watches:
                watch.cancel()
