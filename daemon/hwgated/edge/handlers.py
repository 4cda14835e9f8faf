"""Rebuilding a gRPC method handler around wrapped behaviours, for server interceptors.

grpc.aio interceptors run outside the call's task, so anything that must happen
inside the call (binding the caller, timing it, ending it at shutdown) wraps the
handler's behaviour instead; this is the one place that knows the four kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class Kind:
    """Which sides of the call stream."""

    client_stream: bool
    server_stream: bool


_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, Kind(False, False)),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, Kind(False, True)),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, Kind(True, False)),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, Kind(True, True)),
)


def rewrap(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Any, Kind], Any],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """*handler* with its behaviour replaced by ``wrap(behaviour, kind)``."""
    for attr, make, kind in _KINDS:
        behavior = getattr(handler, attr)
        if behavior is not None:
            return make(  # type: ignore[no-any-return]
                wrap(behavior, kind),
                request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
