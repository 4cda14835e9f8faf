"""Server reflection v1 and v1alpha, over a real socket: method symbols resolve.

A method symbol (``hwgate.v1.PivService.Authenticate``) is what grpcurl asks for
to ``describe`` a method; the stock grpcio-reflection servicer answered it
NOT_FOUND. gRPC's v1 and v1alpha reflection messages are the same on the wire,
so the v1alpha message classes talk to both services here; buf curl (Go, built
on the real v1 protos) is the independent v1 client.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2

from support.daemon import DaemonProc

pytestmark = pytest.mark.testbed

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


def ask(
    daemon: DaemonProc, service: str, **request: str
) -> reflection_pb2.ServerReflectionResponse:
    """One reflection request to *service* (v1 or v1alpha), one response."""
    call = daemon.channel().stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (reply,) = list(call(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10))
    return reply


def files(
    reply: reflection_pb2.ServerReflectionResponse,
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
    out = {}
    for raw in reply.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        out[proto.name] = proto
    return out


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_method_symbol_resolves_to_its_service_file(bare_daemon: DaemonProc, service: str) -> None:
    reply = ask(bare_daemon, service, file_containing_symbol="hwgate.v1.PivService.Authenticate")
    piv = files(reply)["hwgate/v1/piv.proto"]
    (piv_service,) = [s for s in piv.service if s.name == "PivService"]
    assert "Authenticate" in [m.name for m in piv_service.method]
    # Dependencies come along, as for any symbol.
    assert "hwgate/v1/common.proto" in files(reply)


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_unknown_method_of_a_known_service_is_not_found(
    bare_daemon: DaemonProc, service: str
) -> None:
    for symbol in ("hwgate.v1.PivService.NoSuchMethod", "hwgate.v1.NoSuchService.Authenticate"):
        reply = ask(bare_daemon, service, file_containing_symbol=symbol)
        assert reply.WhichOneof("message_response") == "error_response", symbol
        assert reply.error_response.error_code == NOT_FOUND


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_both_reflection_services_list_each_other(bare_daemon: DaemonProc, service: str) -> None:
    reply = ask(bare_daemon, service, list_services="")
    names = {s.name for s in reply.list_services_response.service}
    assert {V1, V1ALPHA, "hwgate.v1.PivService", "grpc.health.v1.Health"} <= names


def test_v1_reflection_describes_itself(bare_daemon: DaemonProc) -> None:
    """The v1 service's own descriptor is served (grpcurl ``describe`` of it works)."""
    reply = ask(bare_daemon, V1, file_containing_symbol=f"{V1}.ServerReflectionInfo")
    v1 = files(reply)[V1_FILE]
    assert v1.package == "grpc.reflection.v1"
    (method,) = v1.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming


def test_v1_descriptor_matches_v1alpha_field_for_field() -> None:
    """The premise of answering v1 with the v1alpha servicer: the same wire format."""
    from hwgated.api.reflection import v1_file_descriptor

    fresh = descriptor_pool.DescriptorPool()
    v1 = v1_file_descriptor(fresh)
    alpha = reflection_pb2.DESCRIPTOR
    assert set(v1.message_types_by_name) == set(alpha.message_types_by_name)
    for name, message in alpha.message_types_by_name.items():
        ours = v1.message_types_by_name[name]
        shape = [(f.name, f.number, f.type, f.is_repeated) for f in message.fields]
        assert [(f.name, f.number, f.type, f.is_repeated) for f in ours.fields] == shape, name
        for field in ours.fields:
            if field.message_type is not None:
                assert field.message_type.file is v1, field.full_name
    assert v1_file_descriptor(fresh) is v1  # added once


def buf_curl(daemon: DaemonProc, *args: str) -> subprocess.CompletedProcess[str]:
    """buf curl forced to grpc.reflection.v1 against the daemon's Unix socket."""
    buf = Path(sys.executable).with_name("buf")
    command = [str(buf), "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    command += ["--unix-socket", str(daemon.socket), "--reflect-protocol", "grpc-v1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_buf_curl_over_v1_reflection(bare_daemon: DaemonProc) -> None:
    """buf curl speaks the real grpc.reflection.v1 protos (Go): list, then call by them."""
    methods = buf_curl(bare_daemon, "--list-methods", "http://hwgated")
    assert methods.returncode == 0, methods.stderr
    assert "hwgate.v1.PivService/Authenticate" in methods.stdout.split()
    call = buf_curl(bare_daemon, "http://hwgated/hwgate.v1.CardService/ListReaders")
    assert call.returncode == 0, call.stderr
    assert "readers" in json.loads(call.stdout)
