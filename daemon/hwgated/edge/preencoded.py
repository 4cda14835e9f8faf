"""A handler layer: responses a servicer already serialized are sent as they are.

A server stream that sends one message to many callers (WatchEvents: one card
event, up to thousands of subscribers) serializes it once and yields the bytes;
grpc would otherwise call the method's serializer once per stream. Messages
that are not bytes still go through the method's own serializer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import grpc


class PreEncodedLayer:
    """For *methods*: a ``bytes`` response is written as it is (see ``ChainInterceptor``)."""

    def __init__(self, methods: Iterable[str]) -> None:
        self._methods = frozenset(methods)

    def wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if method not in self._methods:
            return handler
        encode: Callable[[Any], bytes] | None = handler.response_serializer

        def serialize(message: Any) -> bytes:
            if message.__class__ is bytes or encode is None:
                return message  # type: ignore[no-any-return]
            return encode(message)

        return handler._replace(response_serializer=serialize)  # type: ignore[attr-defined, no-any-return]
