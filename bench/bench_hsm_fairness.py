"""Unary Sign latency alone vs while two bulk SignStreams run (issue 15 item 3).

One hwgated (2 workers) on a private copy of the test bed token. First UNARY
sequential ECDSA P-256 Signs alone; then two SignStreams that keep sending
1024-digest batches (as fast as flow control lets them) and, once both are
being answered, the same UNARY Signs again. Reports p50/p99 of each phase and
their ratios (loaded / alone), the bulk throughput during the loaded phase,
unary failures (a 10 s deadline, the one that used to expire), and the
daemon's RSS before and after. Writes bench/results/hsm_fairness.json.

Run: testbed/isolated .venv/bin/python bench/bench_hsm_fairness.py [--unary 200]
The machine is shared and noisy: read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from bench.bench_hsm import provision, start_hwgated
from bench.procstat import rss_mb
from hwgate.v1 import common_pb2, hsm_pb2, hsm_pb2_grpc

RESULTS = Path(__file__).resolve().parent / "results" / "hsm_fairness.json"
ECDSA = common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256
KEY = hsm_pb2.KeyRef(label="signer-p256")
BATCH = 1024
DEADLINE = 10.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def unary_phase(stub: hsm_pb2_grpc.HsmServiceStub, count: int, tag: str) -> dict[str, Any]:
    """*count* sequential Signs; latencies of those that succeeded, and the failures."""
    latencies: list[float] = []
    failures: list[str] = []
    for i in range(count):
        digest = hashlib.sha256(f"{tag}/{i}".encode()).digest()
        request = hsm_pb2.HsmServiceSignRequest(key=KEY, algorithm=ECDSA, digest=digest)
        start = time.perf_counter()
        try:
            stub.Sign(request, timeout=DEADLINE)
        except grpc.RpcError as err:
            failures.append(str(err.code()))
            continue
        latencies.append((time.perf_counter() - start) * 1000)
    return {
        "n": count,
        "failures": failures,
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
    }


class BulkStream:
    """One SignStream of BATCH-digest requests until stopped, on its own thread."""

    def __init__(self, channel: grpc.Channel, seed: int) -> None:
        self.signatures = 0
        self.errors = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._call: Any = None
        method = channel.stream_stream(
            "/hwgate.v1.HsmService/SignStream",
            request_serializer=hsm_pb2.SignStreamRequest.SerializeToString,
            response_deserializer=hsm_pb2.SignStreamResponse.FromString,
        )
        self._thread = threading.Thread(target=self._run, args=(method, seed), daemon=True)
        self._thread.start()

    def _requests(self, seed: int) -> Iterator[hsm_pb2.SignStreamRequest]:
        digests = [hashlib.sha256(f"{seed}/{i}".encode()).digest() for i in range(BATCH)]
        n = 0
        while not self._stop.is_set():
            n += 1
            yield hsm_pb2.SignStreamRequest(
                request_id=n,
                key=KEY,
                algorithm=ECDSA,
                digest_batch=hsm_pb2.DigestBatch(digests=digests),
            )

    def _run(self, method: Any, seed: int) -> None:
        self._call = method(self._requests(seed), timeout=3600)
        self._ready.set()
        try:
            for response in self._call:
                if response.HasField("error"):
                    self.errors += 1
                self.signatures += len(response.signature_batch.signatures)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.errors += 1

    def stop(self) -> None:
        self._stop.set()
        self._ready.wait(10)
        if self._call is not None:
            self._call.cancel()
        self._thread.join(30)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unary", type=int, default=200, help="Signs per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hwgate-fair-") as tmp:
        root = Path(tmp)
        proc, target = start_hwgated(root, provision(root))
        try:
            with grpc.insecure_channel(target) as channel:
                stub = hsm_pb2_grpc.HsmServiceStub(channel)
                unary_phase(stub, 20, "warm")
                rss_before = rss_mb(proc.pid)
                alone = unary_phase(stub, args.unary, "alone")
                bulk = [BulkStream(grpc.insecure_channel(target), seed) for seed in (1, 2)]
                try:
                    wait_for(lambda: all(b.signatures for b in bulk), 120, "bulk answers")
                    signed_before = sum(b.signatures for b in bulk)
                    start = time.monotonic()
                    loaded = unary_phase(stub, args.unary, "loaded")
                    elapsed = time.monotonic() - start
                    bulk_rate = (sum(b.signatures for b in bulk) - signed_before) / elapsed
                    rss_loaded = rss_mb(proc.pid)
                finally:
                    for b in bulk:
                        b.stop()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    result = {
        "alone": alone,
        "with_two_bulk_streams": loaded,
        "p50_ratio": _ratio(loaded["p50_ms"], alone["p50_ms"]),
        "p99_ratio": _ratio(loaded["p99_ms"], alone["p99_ms"]),
        "bulk_signatures_per_s": bulk_rate,
        "bulk_errors": sum(b.errors for b in bulk),
        "rss_mb": {"before": rss_before, "loaded": rss_loaded},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


if __name__ == "__main__":
    main()
