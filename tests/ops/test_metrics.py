"""The Prometheus endpoint: counters move with RPCs, card events and APDUs."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from opsbed import OpsDaemon

from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed.timing import scaled

LIST_READERS = "/hwgate.v1.CardService/ListReaders"
WATCH = "/hwgate.v1.CardService/WatchEvents"


def scrape(daemon: OpsDaemon) -> str:
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    """The sample *name* with exactly these labels (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


def wait_value(
    daemon: OpsDaemon, name: str, want: Callable[[float], bool], timeout: float = 10, **labels: str
) -> float:
    """Scrape until *name* satisfies *want* (gauges refresh every second)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        got = value(scrape(daemon), name, **labels)
        if want(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} = {got}")
        time.sleep(0.1)  # polling an HTTP endpoint has no event to wait on


def test_metrics_count_rpcs_events_and_apdus(
    start_ops_daemon: Callable[..., OpsDaemon], cards: object
) -> None:
    daemon = start_ops_daemon(watchdog_usec=None, metrics=True)
    before = scrape(daemon)
    assert value(before, "hwgate_rpc_requests_total", method=LIST_READERS, code="OK") == 0
    channel = daemon.channel()
    stub = card_pb2_grpc.CardServiceStub(channel)
    for _ in range(3):
        stub.ListReaders(card_pb2.ListReadersRequest(), timeout=5)
    with pytest.raises(grpc.RpcError):
        hsm_pb2_grpc.HsmServiceStub(channel).ListKeys(hsm_pb2.ListKeysRequest(), timeout=5)

    # A call is counted when the server finishes it, which may be just after the
    # client has its answer (seen once under load): wait for the counts.
    ok = {"method": LIST_READERS, "code": "OK"}
    wait_value(daemon, "hwgate_rpc_requests_total", lambda v: v == 3, **ok)
    wait_value(daemon, "hwgate_rpc_duration_seconds_count", lambda v: v == 3, **ok)
    denied = {"method": "/hwgate.v1.HsmService/ListKeys", "code": "PERMISSION_DENIED"}
    wait_value(daemon, "hwgate_rpc_requests_total", lambda v: v == 1, **denied)
    wait_value(daemon, "hwgate_readers", lambda v: v == 2)
    wait_value(daemon, "hwgate_pcscd_up", lambda v: v == 1)
    text = scrape(daemon)
    assert value(text, "hwgate_rpc_requests_total", **ok) == 3  # and not more

    stream = stub.WatchEvents(card_pb2.WatchEventsRequest())
    next(stream)
    wait_value(daemon, "hwgate_rpc_streams_active", lambda v: v == 1, method=WATCH)
    cards.insert(0)  # type: ignore[attr-defined]
    wait_value(daemon, "hwgate_card_events_total", lambda v: v >= 1, type="CARD_INSERTED")
    wait_value(daemon, "hwgate_cards", lambda v: v == 1)
    reader = "Virtual PCD 00 00"
    # Reading the inserted card's identity (SELECT, GET DATA) goes through the APDU hook.
    wait_value(daemon, "hwgate_apdus_total", lambda v: v >= 2, reader=reader)
    # The test bed watched the insertion through WatchEvents too (its own, now
    # finished streams); count from here on.
    wait_value(daemon, "hwgate_rpc_streams_active", lambda v: v == 1, method=WATCH)
    cancelled = value(scrape(daemon), "hwgate_rpc_requests_total", method=WATCH, code="CANCELLED")
    stream.cancel()
    wait_value(daemon, "hwgate_rpc_streams_active", lambda v: v == 0, method=WATCH)
    text = scrape(daemon)
    after = value(text, "hwgate_rpc_requests_total", method=WATCH, code="CANCELLED")
    assert after == cancelled + 1
