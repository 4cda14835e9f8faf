"""Issue 14, finding 1: one hostile glob pattern froze the whole daemon.

``fnmatch`` is quadratic on ``[``: ListKeys(label_pattern="[" * 1_048_000) pinned
the event loop for over a minute and WatchEvents(reader_patterns=["x" + "[" *
12000]) for seconds, so every RPC on every listener timed out. Caller patterns
are now bounded (INVALID_ARGUMENT naming the field) and matched in linear time,
and the Health service keeps answering while the hostile call is handled.

This module runs its own daemon with the default 1 MiB message limit (the shared
security daemon's 64 KiB limit would refuse the probe before it reaches the
servicer).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import Pki, SecurityDaemon, failure, start_security_daemon

from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed.timing import scaled
from hwgated.patterns import MAX_PATTERN_LENGTH, MAX_PATTERNS

INVALID = grpc.StatusCode.INVALID_ARGUMENT
HUGE_LABEL_PATTERN = "[" * 1_048_000
WATCH_PATTERN = "x" + "[" * 12_000


@pytest.fixture(scope="module")
def dosd(
    testbed: Any, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecurityDaemon]:
    daemon = start_security_daemon(tmp_path_factory.mktemp("dosd"), testbed, pki)
    yield daemon
    try:
        daemon.proc.stop(signal.SIGTERM)
    except subprocess.TimeoutExpired:  # a frozen loop cannot handle SIGTERM (the old bug)
        daemon.proc.stop(signal.SIGKILL)


def _while_health_answers(
    dosd: SecurityDaemon, hostile: Callable[[], object]
) -> tuple[object, float, int]:
    """Run *hostile* in a thread; meanwhile Health must answer every check within 2 s.

    Returns what *hostile* returned (or raised), its duration and the number of checks.
    """
    with dosd.unix_channel() as channel, ThreadPoolExecutor(1) as pool:
        health = health_pb2_grpc.HealthStub(channel)
        health.Check(health_pb2.HealthCheckRequest(), timeout=10)  # connected before the probe
        start = time.monotonic()
        future = pool.submit(hostile)
        checks = 0
        while True:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            checks += 1
            if future.done():
                break
        elapsed = time.monotonic() - start
        try:
            return future.result(), elapsed, checks
        except grpc.RpcError as err:
            return err, elapsed, checks


def test_huge_label_pattern_is_refused_while_health_answers(dosd: SecurityDaemon) -> None:
    with dosd.tls_channel("enrollment") as channel:
        stub = hsm_pb2_grpc.HsmServiceStub(channel)
        request = hsm_pb2.ListKeysRequest(label_pattern=HUGE_LABEL_PATTERN)

        def hostile() -> object:
            return failure(lambda: stub.ListKeys(request, timeout=20))

        outcome, elapsed, checks = _while_health_answers(dosd, hostile)
    assert outcome == (INVALID, "INVALID_ARGUMENT", {"field": "label_pattern", "max": "256"})
    assert elapsed < scaled(10)  # "did not hang": fnmatch needed over a minute
    assert checks >= 1


def test_hostile_watch_pattern_is_refused_while_health_answers(dosd: SecurityDaemon) -> None:
    with dosd.unix_channel() as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        request = card_pb2.WatchEventsRequest(reader_patterns=[WATCH_PATTERN])

        def hostile() -> object:
            return failure(lambda: next(iter(stub.WatchEvents(request, timeout=20))))

        outcome, elapsed, _ = _while_health_answers(dosd, hostile)
    assert outcome == (INVALID, "INVALID_ARGUMENT", {"field": "reader_patterns", "max": "256"})
    assert elapsed < scaled(10)


def test_too_many_watch_patterns_is_refused(dosd: SecurityDaemon) -> None:
    with dosd.unix_channel() as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        request = card_pb2.WatchEventsRequest(reader_patterns=["*"] * (MAX_PATTERNS + 1))
        code, reason, meta = failure(lambda: next(iter(stub.WatchEvents(request, timeout=20))))
    assert (code, reason, meta) == (
        INVALID,
        "INVALID_ARGUMENT",
        {"field": "reader_patterns", "max": str(MAX_PATTERNS)},
    )


def test_longest_allowed_hostile_patterns_are_served_fast(dosd: SecurityDaemon) -> None:
    """Within the bounds, the worst patterns are answered normally and quickly."""
    with dosd.tls_channel("enrollment") as channel:
        stub = hsm_pb2_grpc.HsmServiceStub(channel)
        start = time.monotonic()
        reply = stub.ListKeys(
            hsm_pb2.ListKeysRequest(label_pattern="[" * MAX_PATTERN_LENGTH), timeout=20
        )
        assert list(reply.keys) == []
        star = stub.ListKeys(hsm_pb2.ListKeysRequest(label_pattern="*" * 254 + "ca"), timeout=20)
        assert {k.label for k in star.keys} >= {"issuing-ca"}
        assert time.monotonic() - start < 10
    with dosd.unix_channel() as channel:
        stub = card_pb2_grpc.CardServiceStub(channel)
        patterns = ["x" + "[" * (MAX_PATTERN_LENGTH - 1)] * MAX_PATTERNS
        request = card_pb2.WatchEventsRequest(reader_patterns=patterns)
        events = stub.WatchEvents(request, timeout=20)
        first = next(iter(events))
        # Nothing matches "x[[[…", so the snapshot holds only its end marker.
        assert first.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE
        events.cancel()
