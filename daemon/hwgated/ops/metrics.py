"""Prometheus metrics on their own loopback HTTP port (``[daemon] metrics``).

A private registry (not prometheus-client's global one) holds everything, so
nothing a library registers leaks into the daemon's endpoint. Counters move
where things happen (the RPC interceptor, the APDU hook, the event tap); gauges
are refreshed on the loop by the daemon's ops ticker, so the scrape thread
never touches asyncio-owned state.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Every metric the daemon exports; cheap to create (tests make their own)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.rpcs = Counter(
            "hwgate_rpc_requests", "RPCs finished, by method and status code",
            ["method", "code"], registry=r,
        )  # fmt: skip
        self.rpc_seconds = Histogram(
            "hwgate_rpc_duration_seconds", "RPC handling time, by method and status code",
            ["method", "code"], buckets=RPC_BUCKETS, registry=r,
        )  # fmt: skip
        self.streams = Gauge(
            "hwgate_rpc_streams_active",
            "Open server streams by method (WatchEvents: the event subscribers)",
            ["method"], registry=r,
        )  # fmt: skip
        self.hsm_seconds = Histogram(
            "hwgate_hsm_operation_duration_seconds",
            "HsmService operation time by method, mechanism/algorithm and code",
            ["method", "mechanism", "code"], buckets=RPC_BUCKETS, registry=r,
        )  # fmt: skip
        self.card_events = Counter(
            "hwgate_card_events", "Reader and card events published", ["type"], registry=r
        )
        self.apdus = Counter("hwgate_apdus", "APDUs exchanged with cards", ["reader"], registry=r)
        self.pcscd_reconnects = Counter(
            "hwgate_pcscd_reconnects", "Times pcscd came back after being unavailable", registry=r
        )
        self.pcscd_up = Gauge("hwgate_pcscd_up", "1 while pcscd answers", registry=r)
        self.readers = Gauge("hwgate_readers", "Readers the daemon owns", registry=r)
        self.cards = Gauge("hwgate_cards", "Readers holding a usable card", registry=r)
        self.worker_restarts = Counter(
            "hwgate_hsm_worker_restarts", "HSM worker processes replaced", ["token"], registry=r
        )
        self.hsm_workers = Gauge(
            "hwgate_hsm_workers", "HSM worker processes serving", ["token"], registry=r
        )
        self.hsm_up = Gauge(
            "hwgate_hsm_up", "1 while the token's pool serves", ["token"], registry=r
        )
        self.event_queue_max = Gauge(
            "hwgate_event_queue_depth_max", "Deepest WatchEvents subscriber queue", registry=r
        )
        self.event_queue_total = Gauge(
            "hwgate_event_queue_depth", "Events queued for all WatchEvents subscribers", registry=r
        )
        self._server: Any = None
        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: prometheus-client's ``labels()`` takes a
        lock and validates the names on every call, a visible share of a cheap RPC (and of
        every APDU). Label sets are few (methods, codes, readers) and never removed.
        Safe from any thread: two racing first lookups get the same child."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_apdu(self, reader: str) -> None:
        """The pcsc worker's APDU hook (runs on reader threads; Counter is thread-safe)."""
        self.child(self.apdus, reader).inc()

    def serve(self, address: str) -> str:
        """Start the HTTP endpoint on ``host:port``; returns where it listens."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        server, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        self._server = server
        bound = server.server_address
        where = f"{host}:{bound[1]}"
        log.info("metrics on http://%s/metrics", where)
        return where

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
