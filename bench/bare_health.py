"""The bare-gRPC baseline: a ``grpc.aio`` server with only the health servicer.

``python -m bench.bare_health unix:PATH`` serves ``grpc.health.v1.Health`` (the
same ``grpc_health`` asyncio servicer hwgated uses, status SERVING for "") on a
Unix socket until SIGTERM. Nothing else: no interceptors, no policy, no audit,
no metrics. ``bench_unary`` calls it with the same client code as hwgated, in
the same run, so "hwgate minus bare" is what hwgate itself adds to a call.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer


async def serve(target: str) -> None:
    server = grpc.aio.server()
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(target)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
