"""The identity layer: resolve the caller for every RPC before the servicer runs.

A handler layer of the server's one interceptor (``edge.chain.ChainInterceptor``),
not an interceptor of its own. grpc.aio interceptors run outside the handler's
task, so a context variable set there would not reach the servicer; instead the
handler's behaviour is wrapped and the identity is set inside the call itself.

The layer also owns what happens to a request that is not valid protobuf
for its method. grpcio would answer UNKNOWN ("Unexpected DecodeError"), which
reads like a server bug; the deserializer is wrapped so such a request gets
INVALID_ARGUMENT (reason INVALID_ARGUMENT) — after the caller check, so an
unauthenticated peer learns nothing about the request format.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from hwgated.auth.identity import Caller, UnauthenticatedPeer, resolve_caller, set_caller
from hwgated.auth.peerfront import PeerTable
from hwgated.config import ListenerConfig, PolicyConfig
from hwgated.edge import status as edge_status
from hwgated.edge.handlers import Kind, rewrap
from hwgated.edge.refusals import set_method
from hwgated.errors import InvalidArgument

Check = Callable[[Any, str], None]
Deserializer = Callable[[bytes], Any] | None


class _Undecodable:
    """Stands in for a request message whose bytes did not parse."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _safe_deserializer(deserializer: Deserializer) -> Deserializer:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return _UNDECODABLE

    return decode


def _bad_request() -> InvalidArgument:
    return InvalidArgument("the request is not a valid message for this method", field="request")


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose undecodable messages raise InvalidArgument in the servicer."""
    async for request in requests:
        if request is _UNDECODABLE:
            raise _bad_request()
        yield request


class IdentityLayer:
    """Binds each call to a :class:`~hwgated.auth.identity.Caller`; optional method check."""

    def __init__(
        self,
        listener: ListenerConfig,
        policy: Callable[[], PolicyConfig],
        check: Check | None = None,
        peers: PeerTable | None = None,
    ) -> None:
        self._listener = listener
        self._policy = policy
        self._check = check
        self._peers = peers

    def wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """*handler* with the caller check inside each call (see ``ChainInterceptor``)."""
        decode = _safe_deserializer(handler.request_deserializer)

        def wrap(behavior: Any, kind: Kind) -> Any:
            if kind.server_stream:
                return self._wrap_stream(behavior, method, kind.client_stream)
            return self._wrap_unary(behavior, method, kind.client_stream)

        return rewrap(handler, wrap, request_deserializer=decode)

    def _enter(self, context: Any, method: str) -> None:
        """Resolve and check the caller, and bind it to this call.

        Each RPC runs in its own task (its own context copy), so the variable is
        never reset: an async generator may be finalized from another context,
        where a reset would fail.
        """
        set_method(method)
        caller = resolve_caller(self._listener, self._policy(), context, self._peers)
        set_caller(caller)  # before the check: a refusal is audited with who was refused
        if self._check is not None:
            self._check(caller, method)

    async def _admit(self, request: Any, context: Any, method: str, client_stream: bool) -> Any:
        """Check the caller, then the request; the request the servicer should see."""
        try:
            self._enter(context, method)
            if client_stream:
                return _checked_stream(request)
            if request is _UNDECODABLE:
                raise _bad_request()
        except UnauthenticatedPeer as exc:
            where = str(self._listener.unix or self._listener.tcp)
            set_caller(Caller(role="", subject="unauthenticated", listener=where,
                              peer=context.peer()))  # fmt: skip
            await edge_status.abort(context, exc)
        except Exception as exc:
            await edge_status.abort(context, exc)
        return request

    def _wrap_unary(self, behavior: Any, method: str, client_stream: bool = False) -> Any:
        async def wrapped(request: Any, context: Any) -> Any:
            request = await self._admit(request, context, method, client_stream)
            return await behavior(request, context)

        return wrapped

    def _wrap_stream(self, behavior: Any, method: str, client_stream: bool = False) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            # A streaming handler that writes with context.write (e.g. Health.Watch).
            return self._wrap_unary(behavior, method, client_stream)

        async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
            request = await self._admit(request, context, method, client_stream)
            async for item in behavior(request, context):
                yield item

        return wrapped
