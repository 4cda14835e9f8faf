"""The daemon as a whole: start-up time and memory.

- Start-up: from exec of ``hwgated`` (cards + the test bed token, 2 HSM workers)
  to the first successful health check, and to READY=1 on a fake NOTIFY_SOCKET
  (a datagram socket of ours, as systemd would give). Several starts, medians.
- RSS: idle (cards inserted, nothing asked) and the peak under load (8 client
  processes signing and transmitting for a few seconds), daemon process only
  and daemon + HSM workers.

Run: ``testbed/isolated .venv/bin/python -m bench.bench_daemon [--starts 5]``.
Writes bench/results/daemon.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hwgate_testbed import slots
from tests.support import harness

RESULTS = Path(__file__).resolve().parent / "results"


def one_start(config: Path, work: Path) -> dict[str, float | None]:
    """Exec the daemon once; seconds to first health answer and to READY=1."""
    notify_path = work / "notify.sock"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    ready_at: list[float] = []

    def listen() -> None:
        notify.settimeout(60)
        try:
            while True:
                message = notify.recv(4096).decode()
                if "READY=1" in message.split("\n"):
                    ready_at.append(time.monotonic())
                    return
        except OSError:
            return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    gateway = harness.start_gateway(config, work, env={"NOTIFY_SOCKET": str(notify_path)},
                                    wait=False)  # fmt: skip
    try:
        health = harness.wait_until(lambda: _health_answers(gateway), 60, "a health answer")
        listener.join(60)
        serving = gateway.wait_serving()
    finally:
        gateway.stop()
        notify.close()
    return {
        "health_s": health - gateway.started,
        "ready_s": ready_at[0] - gateway.started if ready_at else None,
        "all_serving_s": serving - gateway.started,
    }


def _health_answers(gateway: harness.Gateway) -> float | None:
    try:
        with gateway.channel() as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
    except grpc.RpcError:
        return None
    return time.monotonic()


def _load_client(target: str, index: int, seconds: float, out: Any) -> None:
    channel = grpc.insecure_channel(target)
    end = time.monotonic() + seconds
    done = 0
    while time.monotonic() < end:
        harness.sign_once(channel, harness.EC_KEY if index % 2 else harness.RSA_KEY)
        harness.transmit_once(channel, harness.READERS[index % 2])
        done += 2
    out.put(done)


def family_rss(gateway: harness.Gateway) -> float:
    return gateway.rss_mb() + sum(harness.rss_mb(p) for p in gateway.hsm_workers())


def memory(config: Path, work: Path, seconds: float) -> dict[str, float]:
    gateway = harness.start_gateway(config, work)
    try:
        with gateway.channel() as channel:  # touch every path once
            harness.sign_once(channel)
            harness.transmit_once(channel, harness.READERS[0])
        idle, idle_family = gateway.rss_mb(), family_rss(gateway)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_load_client, args=(gateway.target, i, seconds, out))
                 for i in range(8)]  # fmt: skip
        for proc in procs:
            proc.start()
        peak = peak_family = 0.0
        while any(p.is_alive() for p in procs) and out.qsize() < len(procs):
            peak = max(peak, gateway.rss_mb())
            peak_family = max(peak_family, family_rss(gateway))
            time.sleep(0.2)  # sampling period
        calls = sum(out.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(30)
        return {"idle_mb": idle, "load_peak_mb": peak, "idle_with_workers_mb": idle_family,
                "load_peak_with_workers_mb": peak_family, "load_calls": calls,
                "load_seconds": seconds}  # fmt: skip
    finally:
        gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=5.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwgate-bench-daemon-"))
    paths = harness.testbed_up(work / "testbed")
    config = harness.write_config(paths, work, metrics=False)
    slots.insert(paths, 0, "alice")
    slots.insert(paths, 1, "bob")
    try:
        starts = [one_start(config, work) for _ in range(args.starts)]
        mem = memory(config, work, args.load_seconds)
    finally:
        for slot in (0, 1):
            slots.remove(paths, slot)
    report: dict[str, Any] = {"starts": starts, "memory": mem}
    for key in ("health_s", "ready_s", "all_serving_s"):
        values = [v for s in starts if (v := s[key]) is not None]
        if values:
            report[key] = {"median": statistics.median(values), "min": min(values),
                           "max": max(values), "n": len(values)}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "daemon.json").write_text(json.dumps(report, indent=2))
    for key in ("health_s", "ready_s", "all_serving_s"):
        if key in report:
            r = report[key]
            print(f"{key:14} median {r['median'] * 1000:7.0f} ms  "
                  f"[{r['min'] * 1000:.0f}..{r['max'] * 1000:.0f}] n={r['n']}")  # fmt: skip
    print(f"RSS idle {mem['idle_mb']:.1f} MB, peak under load {mem['load_peak_mb']:.1f} MB "
          f"(with HSM workers {mem['idle_with_workers_mb']:.1f} -> "
          f"{mem['load_peak_with_workers_mb']:.1f} MB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
