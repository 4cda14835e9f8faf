"""What the SO_PEERCRED relay in front of a Unix listener costs per unary call.

A grpc.aio echo server (the daemon's server options, no servicer work) runs in
a child process behind a PeerFront, as in hwgated; the parent calls it with a
blocking channel, straight on the private socket and through the public one,
in alternating rounds so drift hits both alike. The server does nothing, so
the ratio is the worst case: a real RPC adds its own work to both sides.

    python bench/bench_peerfront.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from hwgated.ops import eventloop

ECHO = "/bench.Echo/Echo"


async def serve(directory: Path) -> None:
    from hwgated.auth.peerfront import PeerFront, PeerTable
    from hwgated.config import ListenerConfig

    table = PeerTable()

    async def echo(request: bytes, context: Any) -> bytes:
        table.lookup(context.peer())  # what the identity interceptor does
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    private, public = directory / "private.sock", directory / "public.sock"
    server.add_insecure_port(f"unix:{private}")
    front = PeerFront(ListenerConfig(unix=public, role="bench", mode=0o600), table, private)
    await front.bind()
    await server.start()
    await front.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await front.close()
    await server.stop(0)


def time_calls(target: str, payload: bytes, calls: int) -> list[float]:
    """Per-call latencies (µs) of *calls* unary calls on one warm channel."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(ECHO)
        for _ in range(50):
            call(payload)
        out = []
        for _ in range(calls):
            start = time.perf_counter()
            call(payload)
            out.append((time.perf_counter() - start) * 1e6)
    return out


def measure(directory: Path, payload: bytes, calls: int, rounds: int) -> dict[str, float]:
    direct: list[float] = []
    relayed: list[float] = []
    for _ in range(rounds):
        direct += time_calls(f"unix:{directory / 'private.sock'}", payload, calls)
        relayed += time_calls(f"unix:{directory / 'public.sock'}", payload, calls)
    d, r = statistics.median(direct), statistics.median(relayed)
    return {
        "direct_median_us": round(d, 1),
        "relayed_median_us": round(r, 1),
        "added_us": round(r - d, 1),
        "ratio": round(r / d, 3),
        "direct_p99_us": round(statistics.quantiles(direct, n=100)[98], 1),
        "relayed_p99_us": round(statistics.quantiles(relayed, n=100)[98], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.serve:
        eventloop.run(serve(args.serve))  # the loop hwgated runs on (uvloop by default)
        return
    with tempfile.TemporaryDirectory() as tmp:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        try:
            results = {
                "small (16 B)": measure(Path(tmp), b"x" * 16, args.calls, args.rounds),
                "64 KiB": measure(Path(tmp), os.urandom(64 << 10), args.calls // 5, args.rounds),
            }
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
