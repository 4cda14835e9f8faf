"""One server interceptor for the daemon's layers, with the wrapped handlers cached.

grpc.aio runs every interceptor's ``intercept_service`` on every call, and each
of the daemon's layers (operations: metrics and shutdown; identity: caller and
policy) used to rebuild the method handler around its wrapped behaviour each
time: two coroutine hops and two handler rebuilds (closures, a namedtuple) per
RPC, a visible share of a cheap call such as Health/Check. The wrapping depends
only on the method and the handler grpc found for it, so this interceptor
composes the layers once per method and hands out the same wrapped handler
afterwards; everything that depends on the call (the caller, the policy in
force, the clock) still happens inside the wrapped behaviour, per call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import grpc


class HandlerLayer(Protocol):
    """What one layer does to a method's handler (pure: same input, same wrapping)."""

    def wrap_handler(
        self, handler: grpc.RpcMethodHandler, method: str
    ) -> grpc.RpcMethodHandler: ...


class ChainInterceptor(grpc.aio.ServerInterceptor):
    """*layers*, outermost first, applied once per (method, handler) and cached."""

    def __init__(self, layers: Sequence[HandlerLayer]) -> None:
        self._layers = tuple(reversed(layers))  # innermost wraps first
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = handler
        for layer in self._layers:
            wrapped = layer.wrap_handler(wrapped, method)
        # Keyed by method: only methods with a registered handler get here, so the
        # cache is bounded by the server's own method table.
        self._cache[method] = (handler, wrapped)
        return wrapped
