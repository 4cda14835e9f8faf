"""The daemon skeleton over a real socket: health, reflection, UNIMPLEMENTED, clean stop."""

from __future__ import annotations

import signal
import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hwgate.v1 import hsm_pb2, hsm_pb2_grpc
from support.daemon import DaemonProc, error_info


def test_health_reports_each_service(bare_daemon: DaemonProc) -> None:
    stub = health_pb2_grpc.HealthStub(bare_daemon.channel())
    # pcscd runs on every machine the tests run on; no HSM token is configured here.
    expected = {
        "": "SERVING",
        "hwgate.v1.CardService": "SERVING",
        "hwgate.v1.PivService": "SERVING",
        "hwgate.v1.HsmService": "NOT_SERVING",
    }
    for service, status in expected.items():
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) == status, service


def test_reflection_lists_the_hwgate_services(bare_daemon: DaemonProc) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(bare_daemon.channel())
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {
        "hwgate.v1.CardService",
        "hwgate.v1.PivService",
        "hwgate.v1.HsmService",
        "grpc.health.v1.Health",
    } <= names


def test_socket_mode_is_applied(bare_daemon: DaemonProc) -> None:
    assert stat.S_ISSOCK(bare_daemon.socket.stat().st_mode)
    assert stat.S_IMODE(bare_daemon.socket.stat().st_mode) == 0o660


def test_sigterm_exits_zero_and_removes_socket(bare_daemon: DaemonProc) -> None:
    assert bare_daemon.stop(signal.SIGTERM) == 0
    assert not bare_daemon.socket.exists()


def test_unknown_method_is_unimplemented(bare_daemon: DaemonProc) -> None:
    channel = bare_daemon.channel()
    call = channel.unary_unary("/hwgate.v1.CardService/NoSuchMethod")
    try:
        call(b"", timeout=5)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    else:
        raise AssertionError("an unknown method must fail")


def test_rpc_outside_the_role_is_policy_denied(bare_daemon: DaemonProc) -> None:
    stub = hsm_pb2_grpc.HsmServiceStub(bare_daemon.channel())
    with pytest.raises(grpc.RpcError) as err:
        stub.ListKeys(hsm_pb2.ListKeysRequest(), timeout=5)
    code, reason, metadata = error_info(err.value)
    assert (code, reason, metadata) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "POLICY_DENIED",
        {"rule": "rpc"},
    )
