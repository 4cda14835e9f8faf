"""The CLI's reflection client: grpc.reflection.v1 first, v1alpha for servers without it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from clients_support import Gateway, run_cli
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hwgate.cli.reflection import Reflection
from hwgate.cli.reflection_db import V1, V1ALPHA


@pytest.fixture
def v1alpha_only(tmp_path: Path) -> Iterator[str]:
    """A plain grpcio server with health and the stock (v1alpha-only) reflection."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    service = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((service, reflection.SERVICE_NAME), server)
    target = f"unix:{tmp_path / 'old.sock'}"
    server.add_insecure_port(target)
    server.start()
    yield target
    server.stop(None)


def test_falls_back_to_v1alpha(v1alpha_only: str) -> None:
    with grpc.insecure_channel(v1alpha_only) as channel:
        found = Reflection(channel)
        assert "grpc.health.v1.Health" in found.services()
        assert found.database.service == V1ALPHA
        method = found.symbol("grpc.health.v1.Health.Check")
        assert method.output_type.full_name == "grpc.health.v1.HealthCheckResponse"
    result = run_cli(["--addr", v1alpha_only, "describe", "grpc.health.v1.HealthCheckRequest"])
    assert result.code == 0, result.err
    assert "string service = 1;" in result.out


@pytest.mark.testbed
def test_prefers_v1_against_hwgated(gateway: Gateway) -> None:
    with grpc.insecure_channel(gateway.admin) as channel:
        found = Reflection(channel)
        assert "hwgate.v1.PivService" in found.services()
        assert found.database.service == V1
        found.symbol("hwgate.v1.PivService.Authenticate")
        # A method symbol straight from the server (not via its service already loaded).
        fresh = Reflection(channel)
        assert fresh.database.FindFileContainingSymbol("hwgate.v1.PivService.Authenticate")
        assert fresh.database.service == V1
        with pytest.raises(KeyError):  # the server's NOT_FOUND (nothing cached yet)
            Reflection(channel).database.FindFileContainingSymbol("hwgate.v1.PivService.Nope")
