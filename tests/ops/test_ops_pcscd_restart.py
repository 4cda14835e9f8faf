"""Health Watch across a pcscd kill -9 and restart (inside the test bed's namespace),
and card events resuming on the same WatchEvents stream, without a daemon restart."""

from __future__ import annotations

import itertools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opsbed import OpsDaemon

from hwgate_testbed import pcscd, procs
from support.events import EventCollector, is_event

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthWatch:
    """One Health.Watch stream read into a queue."""

    def __init__(self, channel: grpc.Channel, service: str) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        self._call = stub.Watch(health_pb2.HealthCheckRequest(service=service))
        self.statuses: queue.Queue[int] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self._call:
                self.statuses.put(reply.status)
        except grpc.RpcError:
            pass

    def wait_for(self, status: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"health never became {status}"
            try:
                if self.statuses.get(timeout=remaining) == status:
                    return
            except queue.Empty:
                continue

    def cancel(self) -> None:
        self._call.cancel()


@pytest.fixture
def our_pcscd(testbed: object) -> Iterator[Callable[[], None]]:
    """kill -9 for the test bed's own pcscd; whatever happens, pcscd is back afterwards."""
    paths = testbed.paths  # type: ignore[attr-defined]
    pid = procs.read_pid(paths.pcscd_pid)
    if pid is None or not procs.is_running(pid, pcscd.PCSCD_MARKER):
        pytest.skip("pcscd was not started by this test bed (run inside testbed/isolated)")

    def kill() -> None:
        os.kill(pid, signal.SIGKILL)
        assert procs.wait_exit(pid, time.monotonic() + 10), "pcscd did not die"

    try:
        yield kill
    finally:
        pcscd.ensure_running(paths, time.monotonic() + 20)


def test_health_and_events_follow_pcscd(
    start_ops_daemon: Callable[..., OpsDaemon],
    our_pcscd: Callable[[], None],
    testbed: object,
    cards: object,
) -> None:
    daemon = start_ops_daemon(watchdog_usec=1_000_000)
    channel = daemon.channel()
    health = HealthWatch(channel, "hwgate.v1.CardService")
    health.wait_for(SERVING)
    events = EventCollector(channel)
    events.snapshot()

    killed = time.monotonic()
    our_pcscd()
    health.wait_for(NOT_SERVING)
    events.wait_for(is_event("SERVICE_DOWN"))
    daemon.notify.wait_for(lambda line: line == "STATUS=pcscd unavailable; no hsm", after=killed)

    pcscd.ensure_running(testbed.paths, time.monotonic() + 20)  # type: ignore[attr-defined]
    health.wait_for(SERVING)
    events.wait_for(is_event("SERVICE_UP"))
    events.wait_for(is_event("READER_ADDED", "Virtual PCD 00 00"))

    cards.insert(0)  # type: ignore[attr-defined]
    inserted = events.wait_for(is_event("CARD_INSERTED", "Virtual PCD 00 00"))
    assert inserted.atr and inserted.HasField("card")  # a real card, read after the restart
    # The watchdog kept pinging through the outage: pcscd down is not a wedged daemon.
    daemon.notify.wait_line("WATCHDOG=1", timeout=5, after=time.monotonic())
    pings = [t for t in daemon.notify.times("WATCHDOG=1") if t >= killed - 0.6]
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    assert pings[0] < killed and max(gaps) < 1.5, gaps
    assert daemon.proc.poll() is None
    health.cancel()
    events.cancel()
