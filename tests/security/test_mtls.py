"""The network listener: who gets in over mutual TLS, and with which role.

A certificate the TLS layer must refuse (none, another CA, outside its validity)
never reaches the daemon's code: the handshake fails and the client sees
UNAVAILABLE. A valid certificate that maps to no role gets in at the TLS layer
and is refused by the identity interceptor with UNAUTHENTICATED_PEER.
"""

from __future__ import annotations

import hashlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import SecurityDaemon, failure, status_code

from hwgate.v1 import (
    card_pb2,
    card_pb2_grpc,
    common_pb2,
    hsm_pb2,
    hsm_pb2_grpc,
    piv_pb2,
    piv_pb2_grpc,
)

DENIED = grpc.StatusCode.PERMISSION_DENIED
RSA_SHA256 = common_pb2.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256
DIGEST = hashlib.sha256(b"derived credential CSR").digest()


def issuing_ca_sign(channel: grpc.Channel) -> hsm_pb2.HsmServiceSignResponse:
    stub = hsm_pb2_grpc.HsmServiceStub(channel)
    request = hsm_pb2.HsmServiceSignRequest(
        key=hsm_pb2.KeyRef(label="issuing-ca"), algorithm=RSA_SHA256, digest=DIGEST
    )
    return stub.Sign(request, timeout=15)


def list_readers(channel: grpc.Channel) -> card_pb2.ListReadersResponse:
    return card_pb2_grpc.CardServiceStub(channel).ListReaders(
        card_pb2.ListReadersRequest(), timeout=10
    )


def health(channel: grpc.Channel) -> health_pb2.HealthCheckResponse:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)


@pytest.mark.parametrize("client", [None, "other-ca", "expired", "not-yet-valid"])
def test_tls_layer_refuses_the_certificate(secd: SecurityDaemon, client: str | None) -> None:
    with secd.tls_channel(client) as channel:
        assert status_code(lambda: health(channel)) == grpc.StatusCode.UNAVAILABLE
    # The refused handshake cost the daemon nothing: a good client still gets in.
    with secd.tls_channel("kiosk") as channel:
        assert health(channel).status == health_pb2.HealthCheckResponse.SERVING


def test_unmapped_certificate_is_unauthenticated(secd: SecurityDaemon) -> None:
    with secd.tls_channel("unmapped") as channel:
        code, reason, _ = failure(lambda: list_readers(channel))
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED_PEER")
        # Even health needs an identity on the TLS listener.
        code, reason, _ = failure(lambda: health(channel))
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED_PEER")


def test_each_role_passes_where_its_role_allows(secd: SecurityDaemon) -> None:
    with secd.tls_channel("kiosk") as channel:
        assert list_readers(channel).readers  # the test bed's vpcd readers
    with secd.tls_channel("enrollment") as channel:
        assert issuing_ca_sign(channel).signature
        keys = hsm_pb2_grpc.HsmServiceStub(channel).ListKeys(hsm_pb2.ListKeysRequest(), timeout=10)
        assert "issuing-ca" in {k.label for k in keys.keys}
    with secd.tls_channel("admin") as channel:
        assert list_readers(channel).readers
        assert issuing_ca_sign(channel).signature


def test_cn_rule_maps_a_certificate_without_san(secd: SecurityDaemon) -> None:
    with secd.tls_channel("cn-only") as channel:
        assert issuing_ca_sign(channel).signature  # "operator" is an admin
    record = [r for r in secd.audit_records() if r["action"] == "hsm.sign"][-1]
    assert (record["role"], record["subject"]) == ("admin", "CN=operator")


def test_kiosk_cannot_sign_with_issuing_ca(secd: SecurityDaemon) -> None:
    with secd.tls_channel("kiosk") as channel:
        # The kiosk role may call HsmService/Sign (rpc passes) but not with this key,
        # which therefore does not exist for it.
        code, reason, meta = failure(lambda: issuing_ca_sign(channel))
    assert (code, reason, meta) == (
        grpc.StatusCode.NOT_FOUND,
        "KEY_NOT_FOUND",
        {"key": "issuing-ca"},
    )


def test_kiosk_cannot_transmit(secd: SecurityDaemon) -> None:
    request = card_pb2.TransmitRequest(reader="any", apdus=[bytes.fromhex("00A4040000")])
    with secd.tls_channel("kiosk") as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        code, reason, meta = failure(lambda: stub.Transmit(request, timeout=10))
    # Metadata names only the rule class, never the policy's patterns or roles.
    assert (code, reason, meta) == (DENIED, "POLICY_DENIED", {"rule": "rpc"})


def test_enrollment_cannot_verify_pin(secd: SecurityDaemon) -> None:
    request = piv_pb2.VerifyPinRequest(session_id="x", pin=b"123456")
    with secd.tls_channel("enrollment") as channel:
        stub = piv_pb2_grpc.PivServiceStub(channel)
        code, reason, meta = failure(lambda: stub.VerifyPin(request, timeout=10))
    assert (code, reason, meta) == (DENIED, "POLICY_DENIED", {"rule": "rpc"})


def test_mtls_identity_reaches_the_audit_log(secd: SecurityDaemon) -> None:
    with secd.tls_channel("enrollment") as channel:
        issuing_ca_sign(channel)
    records = [r for r in secd.audit_records() if r["action"] == "hsm.sign"]
    assert records, "HsmService/Sign was not audited"
    last = records[-1]
    assert last["role"] == "enrollment"
    assert last["subject"] == "spiffe://hwgate.test/enrollment"
    assert last["listener"] == f"127.0.0.1:{secd.tls_port}"
    assert last["outcome"] == "ok" and last["key"] == "issuing-ca"


def test_insecure_loopback_listener_serves_with_its_role(secd: SecurityDaemon) -> None:
    with secd.plain_channel() as channel:
        assert list_readers(channel).readers  # kiosk may list readers
        code, reason, meta = failure(
            lambda: hsm_pb2_grpc.HsmServiceStub(channel).ListKeys(
                hsm_pb2.ListKeysRequest(), timeout=10
            )
        )
    assert (code, reason, meta) == (DENIED, "POLICY_DENIED", {"rule": "rpc"})


def test_tls_client_cannot_use_the_insecure_port_or_vice_versa(secd: SecurityDaemon) -> None:
    # Plain text to the TLS port fails the handshake: no silent downgrade.
    with grpc.insecure_channel(f"127.0.0.1:{secd.tls_port}") as channel:
        assert status_code(lambda: health(channel)) == grpc.StatusCode.UNAVAILABLE
