"""CardService benchmarks, each side by side with its baseline in one run.

1. APDU round trip: one SELECT through hwgate's Transmit vs direct pyscard
   (same kind of card, other reader), median/p99; a 16-APDU batch in one
   Transmit vs 16 direct transmits.
2. Card insert → event: at 1, 100 and 1000 WatchEvents subscribers, against a
   raw SCardGetStatusChange watcher in the same process (the added latency is
   what hwgate costs on top of pcscd's own detection).
3. Daemon RSS idle and with 1000 subscribers.

Run inside a private pcscd: ``testbed/isolated .venv/bin/python bench/bench_card.py``.
Writes bench/results/card.json. Goals (issue #4): single APDU median <= 0.6 ms;
batch <= 1.5x direct; added p99 <= 50 ms at 1000 subscribers; RSS <= +50 MB.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from smartcard import scard

from bench.fanout_clients import RawWatcher, SubscriberProcesses, daemon_config
from bench.procstat import rss_mb
from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed import orchestrate, slots
from hwgate_testbed.paths import TestbedPaths, vpcd_reader

SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")
R0, R1 = vpcd_reader(0), vpcd_reader(1)
RESULTS = Path(__file__).parent / "results"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(ms), "p99_ms": pct(ms, 0.99), "n": len(ms)}


# --- direct pyscard ---------------------------------------------------------------------


class Direct:
    def __init__(self, reader: str) -> None:
        _, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        rv, self.card, self.proto = scard.SCardConnect(
            self.ctx,
            reader,
            scard.SCARD_SHARE_EXCLUSIVE,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        assert rv == 0, scard.SCardGetErrorMessage(rv)

    def transmit(self, apdu: bytes) -> bytes:
        rv, resp = scard.SCardTransmit(self.card, self.proto, list(apdu))
        assert rv == 0
        return bytes(resp)

    def close(self) -> None:
        scard.SCardDisconnect(self.card, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(self.ctx)


def time_calls(fn: object, n: int) -> list[float]:
    call = fn  # type: ignore[assignment]
    for _ in range(min(50, n)):  # warm-up
        call()  # type: ignore[operator]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bench_apdu(stub: card_pb2_grpc.CardServiceStub, n: int) -> dict[str, object]:
    direct = Direct(R1)
    try:
        single = card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV])
        batch = card_pb2.TransmitRequest(reader=R0, apdus=[SELECT_PIV] * 16)
        results = {
            "direct_single": summary(time_calls(lambda: direct.transmit(SELECT_PIV), n)),
            "hwgate_single": summary(time_calls(lambda: stub.Transmit(single), n)),
            "direct_16": summary(
                time_calls(lambda: [direct.transmit(SELECT_PIV) for _ in range(16)], n // 4)
            ),
            "hwgate_16": summary(time_calls(lambda: stub.Transmit(batch), n // 4)),
        }
    finally:
        direct.close()
    return results


# --- event latency ----------------------------------------------------------------------


def subscribers_latency(
    target: str, count: int, inserts: int, paths: TestbedPaths, daemon_pid: int
) -> dict[str, object]:
    """Subscribers live in their own processes so the client's GIL does not cap them."""
    subscribers = SubscriberProcesses(target, count, 4)
    subscribers.wait_ready()
    rss = rss_mb(daemon_pid)
    watcher = RawWatcher()
    watcher.start()
    inserted = subscribers.shared["inserted"]
    subscribers.shared["go"].set()
    for k in range(inserts):
        slots.insert(paths, 0, "alice")
        deadline = time.monotonic() + 20
        while inserted.value < count * (k + 1) and time.monotonic() < deadline:
            time.sleep(0.005)  # bench pacing, not test synchronization
        slots.remove(paths, 0)
    watcher.stop = True
    seen = [row for result in subscribers.finish() for row in result["seen"]]
    added = []
    for k, raw in enumerate(watcher.inserts[:inserts]):
        added += [(s[k] - raw) * 1000 for s in seen if len(s) > k]
    return {"subscribers": count, "added_ms": summary(added) if added else None, "rss_mb": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="APDU round trips per side")
    parser.add_argument("--inserts", type=int, default=10, help="insertions per subscriber count")
    parser.add_argument("--subscribers", default="1,100,1000")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwgate-bench-card-"))
    paths = TestbedPaths.at(work / "testbed")
    orchestrate.up(paths, insert_card=False)
    sock = work / "hwgate.sock"
    config = daemon_config(work, sock, 1000)  # 1000 subscribers share 4 connections
    daemon = subprocess.Popen([sys.executable, "-m", "hwgated", "--config", str(config)])
    try:
        channel = grpc.insecure_channel(f"unix:{sock}")
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = card_pb2_grpc.CardServiceStub(channel)
        idle_rss = rss_mb(daemon.pid)
        slots.insert(paths, 0, "alice")
        slots.insert(paths, 1, "bob")
        apdu = bench_apdu(stub, args.n)
        slots.remove(paths, 0)
        events = [
            subscribers_latency(f"unix:{sock}", int(c), args.inserts, paths, daemon.pid)
            for c in args.subscribers.split(",")
        ]
        report = {"apdu": apdu, "events": events, "idle_rss_mb": idle_rss}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        orchestrate.down(paths)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "card.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report: dict[str, object]) -> None:
    apdu = report["apdu"]
    assert isinstance(apdu, dict)
    print("\nAPDU round trip                 median ms   p99 ms")
    for key in ("direct_single", "hwgate_single", "direct_16", "hwgate_16"):
        print(f"  {key:28s} {apdu[key]['median_ms']:9.3f} {apdu[key]['p99_ms']:8.3f}")
    single = apdu["hwgate_single"]["median_ms"]
    batch_ratio = apdu["hwgate_16"]["median_ms"] / apdu["direct_16"]["median_ms"]
    print(f"  goal single <= 0.6 ms: {single:.3f} ms -> {'PASS' if single <= 0.6 else 'MISS'}")
    print(
        f"  goal batch <= 1.5x direct: {batch_ratio:.2f}x -> "
        f"{'PASS' if batch_ratio <= 1.5 else 'MISS'}"
    )
    print(f"\nidle RSS {report['idle_rss_mb']:.1f} MB")
    print("insert -> event, added over raw SCardGetStatusChange   median ms   p99 ms   RSS MB")
    events = report["events"]
    assert isinstance(events, list)
    for row in events:
        added = row["added_ms"] or {"median_ms": float("nan"), "p99_ms": float("nan")}
        print(
            f"  {row['subscribers']:5d} subscribers {'':30s} {added['median_ms']:9.2f} "
            f"{added['p99_ms']:8.2f} {row['rss_mb']:7.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
