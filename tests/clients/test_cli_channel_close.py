"""A CLI command closes its channel right after its call, with nothing printed after it.

Before: the CLI waited for readiness with ``channel.subscribe`` and
``grpc.channel_ready_future``, which start grpc's ``_poll_connectivity`` thread.
That thread outlives the subscription by up to 0.2 s, and when the command closed
its channel in that window it died with "ValueError: Cannot invoke RPC: Channel
closed!" and a traceback on stderr (seen now and then in scripts). Readiness is now
one Health/Check call (hwgate.readiness): no polling thread is ever started.

A plain grpc server in this process stands in for hwgated: no test bed needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from clients_support import run_cli
from grpc import _channel as grpc_channel
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import hwgate
from hwgate import readiness

ROUNDS = 40  # quick invocations; each one raced the poller before


@pytest.fixture(scope="module")
def health_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("chan") / "health.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((name, reflection.SERVICE_NAME), server)
    server.add_insecure_port(f"unix:{path}")
    server.start()
    yield f"unix://{path}"
    server.stop(None)


@pytest.fixture
def pollers(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connectivity-polling thread grpc starts during the test."""
    started: list[object] = []
    original = grpc_channel._spawn_poll_connectivity

    def spawn(state: Any, try_to_connect: bool) -> None:
        started.append(state)
        original(state, try_to_connect)

    monkeypatch.setattr(grpc_channel, "_spawn_poll_connectivity", spawn)
    return started


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that end any thread (what grpc's poller printed on stderr)."""
    caught: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        caught.append(f"{args.exc_type.__name__}: {args.exc_value}")

    monkeypatch.setattr(threading, "excepthook", hook)
    return caught


def test_the_cli_starts_no_connectivity_poller(health_server: str, pollers: list[object]) -> None:
    result = run_cli(["--addr", health_server, "health", ""])
    assert result.code == 0, result.err
    assert pollers == [], "readiness must not subscribe to the channel's connectivity"


def test_many_quick_invocations_print_nothing_after_the_call(
    health_server: str, thread_errors: list[str], tmp_path: Path
) -> None:
    for _ in range(ROUNDS):
        result = run_cli(["--addr", health_server, "call", "grpc.health.v1.Health/Check"])
        assert result.code == 0, result.err
        assert result.err == "", result.err
    # A poller left behind would fail within its 0.2 s period: give it that long.
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.daemon:
            thread.join(timeout=0.5)
    assert thread_errors == []


def test_library_wait_ready_needs_no_poller(health_server: str, pollers: list[object]) -> None:
    with hwgate.connect(health_server, health_service=None) as client:
        client.wait_ready(timeout=10)
    assert pollers == []


def test_probe_tells_a_failed_attempt_from_a_timeout(tmp_path: Path) -> None:
    nothing = f"unix://{tmp_path / 'absent.sock'}"
    with grpc.insecure_channel(nothing) as channel:
        assert readiness.probe(channel, 10, wait_for_ready=False) is readiness.Probe.FAILED
        assert readiness.probe(channel, 0.2, wait_for_ready=True) is readiness.Probe.TIMEOUT
    assert not readiness.wait_ready(grpc.insecure_channel(nothing), 0.1)
