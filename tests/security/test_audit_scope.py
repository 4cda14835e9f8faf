"""What is audited (docs/audit.md): acts, and every refusal by policy; not successful reads.

Before: a refused call was audited only when its servicer happened to audit the
act (Sign, VerifyPin, ...); a method the role may not call at all, a client
certificate mapped to no role, or a refused read (GetPublicKey of a hidden key,
GetCardInfo of a reader the role may not use) left no record. Successful read-only
calls stay unaudited: they change nothing and would drown the trail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import SecurityDaemon

from hwgate.v1 import card_pb2, card_pb2_grpc, common_pb2, hsm_pb2, hsm_pb2_grpc

HIDDEN_FROM_ENROLLMENT = "ecdh-p256"  # only the admin's "*" rule matches it


def _new_records(secd: SecurityDaemon, act: Callable[[], Any]) -> list[dict[str, Any]]:
    """The audit records *act* added (the daemon writes them before it answers)."""
    before = len(secd.audit_records())
    with contextlib.suppress(grpc.RpcError):
        act()
    return secd.audit_records()[before:]


def test_successful_reads_are_not_audited(secd: SecurityDaemon) -> None:
    with secd.tls_channel("admin") as channel:
        cards = card_pb2_grpc.CardServiceStub(channel)
        hsm = hsm_pb2_grpc.HsmServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        def reads() -> None:
            cards.ListReaders(card_pb2.ListReadersRequest(), timeout=10)
            hsm.ListKeys(hsm_pb2.ListKeysRequest(), timeout=10)
            key = hsm_pb2.KeyRef(label="signer-p256")
            hsm.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=key), timeout=10)
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)

        assert _new_records(secd, reads) == []


def test_a_method_the_role_may_not_call_is_audited(secd: SecurityDaemon) -> None:
    with secd.tls_channel("kiosk") as channel:
        hsm = hsm_pb2_grpc.HsmServiceStub(channel)
        added = _new_records(secd, lambda: hsm.ListKeys(hsm_pb2.ListKeysRequest(), timeout=10))
    (record,) = added
    assert record["action"] == "rpc.denied" and record["outcome"] == "POLICY_DENIED"
    assert record["method"] == "hwgate.v1.HsmService/ListKeys"
    assert record["rule"] == "rpc"
    assert (record["role"], record["subject"]) == ("kiosk", "spiffe://hwgate.test/kiosk")


def test_a_certificate_that_maps_to_no_role_is_audited(secd: SecurityDaemon) -> None:
    with secd.tls_channel("unmapped") as channel:
        cards = card_pb2_grpc.CardServiceStub(channel)
        added = _new_records(
            secd, lambda: cards.ListReaders(card_pb2.ListReadersRequest(), timeout=10)
        )
    (record,) = added
    assert record["action"] == "rpc.denied" and record["outcome"] == "UNAUTHENTICATED_PEER"
    assert record["method"] == "hwgate.v1.CardService/ListReaders"
    assert record["subject"] == "unauthenticated" and record["role"] == ""
    assert record["peer"].startswith("ipv4:127.0.0.1:")


def test_a_refused_read_is_audited_as_what_the_client_cannot_see(secd: SecurityDaemon) -> None:
    key = hsm_pb2.KeyRef(label=HIDDEN_FROM_ENROLLMENT)
    with secd.tls_channel("enrollment") as channel:
        hsm = hsm_pb2_grpc.HsmServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            hsm.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=key), timeout=10)
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND  # hidden: as if absent
        added = _new_records(
            secd, lambda: hsm.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=key), timeout=10)
        )
    (record,) = added
    assert record["action"] == "rpc.denied" and record["outcome"] == "POLICY_DENIED"
    assert record["method"] == "hwgate.v1.HsmService/GetPublicKey"


def test_a_refused_act_is_audited_once_as_that_act(secd: SecurityDaemon) -> None:
    key = hsm_pb2.KeyRef(label=HIDDEN_FROM_ENROLLMENT)
    request = hsm_pb2.HsmServiceSignRequest(
        key=key, algorithm=common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256, digest=bytes(32)
    )
    with secd.tls_channel("enrollment") as channel:
        hsm = hsm_pb2_grpc.HsmServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            hsm.Sign(request, timeout=10)
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND, refused.value.details()
        added = _new_records(secd, lambda: hsm.Sign(request, timeout=10))
    assert [(r["action"], r["outcome"]) for r in added] == [("hsm.sign", "POLICY_DENIED")]
