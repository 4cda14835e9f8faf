"""ChainInterceptor: the daemon's layers composed once per method, run on every call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from hwgated.edge.chain import ChainInterceptor
from hwgated.edge.handlers import Kind, rewrap


class Layer:
    """Records each wrap (per method) and each call (per RPC), in order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.wraps = name, log, 0

    def wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        self.wraps += 1

        def wrap(behavior: Any, kind: Kind) -> Any:
            async def wrapped(request: Any, context: Any) -> Any:
                self.log.append(f"{self.name}>")
                try:
                    return await behavior(request, context)
                finally:
                    self.log.append(f"<{self.name}")

            return wrapped

        return rewrap(handler, wrap)


def test_layers_wrap_once_per_method_and_run_outermost_first_on_every_call(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    outer, inner = Layer("outer", log), Layer("inner", log)

    async def run() -> list[int]:
        server = grpc.aio.server(interceptors=[ChainInterceptor([outer, inner])])
        health = HealthServicer()
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        target = f"unix:{tmp_path / 's.sock'}"
        server.add_insecure_port(target)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                replies = [await stub.Check(health_pb2.HealthCheckRequest()) for _ in range(5)]
                unknown = stub.Check(health_pb2.HealthCheckRequest(service="nope"))
                try:
                    await unknown
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await server.stop(0)
        return [r.status for r in replies]

    statuses = asyncio.run(run())
    assert statuses == [health_pb2.HealthCheckResponse.SERVING] * 5
    # Six calls of one method: one wrap per layer, six passes through both layers.
    assert (outer.wraps, inner.wraps) == (1, 1)
    assert log == ["outer>", "inner>", "<inner", "<outer"] * 6
