"""The asyncio client: the same methods as :class:`hwgate.Client`, awaitable.

Unary methods are coroutines built from the same :mod:`hwgate.requests`
functions as the blocking client's, so names, parameters and defaults match
(tests/clients/test_parity.py checks every RPC). ``watch_events`` returns an
async iterator with the same resume behaviour as the blocking one (see
:mod:`hwgate.resume`); ``sign_stream`` is an async iterator. ``hsm_key`` is
only on the blocking client, because cryptography's ``sign()`` is synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from hwgate import errors, names
from hwgate import requests as rq
from hwgate.channel import DEFAULT_KEEPALIVE_MS, channel_spec, open_aio_channel
from hwgate.client import DEFAULT_TIMEOUT, PathLike
from hwgate.resume import ResumeState, resumable
from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc, piv_pb2_grpc

T = TypeVar("T")
P = ParamSpec("P")


class AsyncEventStream:
    """Async iterator over WatchEvents that resumes like :class:`hwgate.events.EventStream`."""

    def __init__(
        self,
        stub: card_pb2_grpc.CardServiceStub,
        state: ResumeState,
        metadata: list[tuple[str, str]] | None,
        resume: bool = True,
    ) -> None:
        self._stub, self.state, self._metadata, self._resume = stub, state, metadata, resume
        self._call: Any = None
        self._cancelled = False
        self.reconnects = 0

    @property
    def after_sequence(self) -> int:
        return self.state.after_sequence

    async def __aiter__(self) -> AsyncIterator[card_pb2.WatchEventsResponse]:
        while not self._cancelled:
            self._call = self._stub.WatchEvents(
                self.state.request(), metadata=self._metadata, wait_for_ready=True
            )
            try:
                async for event in self._call:
                    if self.state.accept(event):
                        yield event
            except grpc.RpcError as err:
                if self._cancelled:
                    return
                exc = errors.from_rpc_error(err)
                if not (self._resume and resumable(exc)):
                    raise exc from err
            except asyncio.CancelledError:
                if self._cancelled:
                    return
                raise
            if not self._resume or self._cancelled:
                return
            self.reconnects += 1
            await asyncio.sleep(self.state.next_backoff())

    def cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()


def _unary(
    build: Callable[P, rq.Call[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """An :class:`AsyncClient` coroutine method that sends the call *build* describes."""

    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._invoke(build(*args, **kwargs))

    return rq.as_method(method, build, "AsyncClient")  # type: ignore[no-any-return]


def _in_session(
    build: Callable[Concatenate[str, P], rq.Call[T]],
) -> Callable[Concatenate[AsyncCardSession, P], Coroutine[Any, Any, T]]:
    """An :class:`AsyncCardSession` coroutine method: *build* with the session's id first."""

    async def method(self: AsyncCardSession, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.client._invoke(build(self.session_id, *args, **kwargs))

    return rq.as_method(method, build, "AsyncCardSession", bound=1)  # type: ignore[no-any-return]


@dataclass
class AsyncCardSession:
    """An open session (see :meth:`AsyncClient.card_session`); methods as on CardSession."""

    client: AsyncClient
    reader: str
    session_id: str

    get_card_info = _in_session(rq.session_get_card_info)
    verify_pin = _in_session(rq.session_verify_pin)
    change_pin = _in_session(rq.session_change_pin)
    unblock_pin = _in_session(rq.session_unblock_pin)
    authenticate = _in_session(rq.session_authenticate)
    sign = _in_session(rq.session_sign)
    transmit = _in_session(rq.session_transmit)


class AsyncClient:
    """asyncio connection to hwgated. Use :func:`hwgate.aio.connect`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.channel = channel
        self.timeout = timeout
        self.metadata = list(metadata)
        self.card = card_pb2_grpc.CardServiceStub(channel)
        self.piv = piv_pb2_grpc.PivServiceStub(channel)
        self.hsm = hsm_pb2_grpc.HsmServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self.metadata or None, timeout=self.timeout)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from err

    async def _invoke(self, call: rq.Call[T]) -> T:
        stub_method = getattr(getattr(self, call.stub), call.method)
        steps = call.exchange()
        request = next(steps)
        while True:  # one RPC per request the call yields (several for a paged list)
            response = await self._call(stub_method, request)
            try:
                request = steps.send(response)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the channel is connected; HwgateError(UNAVAILABLE) if not in time."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except TimeoutError:
            raise errors.HwgateError(
                grpc.StatusCode.UNAVAILABLE, f"not connected within {timeout}s"
            ) from None

    health = _unary(rq.health)

    # --- CardService ---

    list_readers = _unary(rq.list_readers)
    open_session = _unary(rq.open_session)
    close_session = _unary(rq.close_session)
    transmit = _unary(rq.transmit)

    def watch_events(
        self,
        reader_patterns: Sequence[str] = (),
        event_types: Sequence[int] = (),
        *,
        after_sequence: int = 0,
        resume: bool = True,
    ) -> AsyncEventStream:
        """Reader and card events, snapshot first; resumes across drops (see EventStream)."""
        state = ResumeState(after_sequence, list(reader_patterns), list(event_types))
        return AsyncEventStream(self.card, state, self.metadata or None, resume)

    @contextlib.asynccontextmanager
    async def card_session(
        self, reader: str, ttl: float | None = None
    ) -> AsyncIterator[AsyncCardSession]:
        """Open a session; always closed on exit (an already-gone session is fine)."""
        opened = await self.open_session(reader, ttl)
        try:
            yield AsyncCardSession(self, reader, opened.session_id)
        finally:
            # Ended meanwhile: expired (a SessionNotFound) or its card pulled.
            with contextlib.suppress(errors.SessionNotFound, errors.CardRemoved):
                await self.close_session(opened.session_id)

    # --- PivService ---

    get_card_info = _unary(rq.get_card_info)
    verify_pin = _unary(rq.verify_pin)
    change_pin = _unary(rq.change_pin)
    unblock_pin = _unary(rq.unblock_pin)
    authenticate = _unary(rq.authenticate)
    piv_sign = _unary(rq.piv_sign)

    # --- HsmService ---

    list_keys = _unary(rq.list_keys)
    get_public_key = _unary(rq.get_public_key)
    sign = _unary(rq.sign)
    derive = _unary(rq.derive)
    generate_key = _unary(rq.generate_key)
    delete_key = _unary(rq.delete_key)
    wrap_key = _unary(rq.wrap_key)
    unwrap_key = _unary(rq.unwrap_key)
    rewrap_for_peer = _unary(rq.rewrap_for_peer)

    async def sign_many(
        self,
        key: names.KeyRefLike,
        algorithm: names.SignatureAlgorithmLike,
        digests: Iterable[bytes],
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """As ``Client.sign_many``: the signatures in digest order, batches on one
        SignStream; a failed batch's items are retried one by one for their own errors."""
        from hwgate import batching as b

        ref, number = names.key_ref(key), names.signature_algorithm(algorithm)
        items = list(digests)
        if not items:
            return []
        pieces, requests = b.batch_requests(ref, number, items)
        try:
            responses = b.in_request_order(requests, await self._stream(requests))
        except errors.HwgateError as exc:
            return b.raise_first([exc] * len(items), return_exceptions)
        outcomes: list[Any] = []
        for piece, response in zip(pieces, responses, strict=True):
            signatures = b.batch_signatures(piece, response)
            if signatures is not None:
                outcomes += signatures
                continue
            singles = b.single_requests(ref, number, piece)
            try:
                outcomes += b.single_outcomes(
                    b.in_request_order(singles, await self._stream(singles))
                )
            except errors.HwgateError as exc:
                outcomes += [exc] * len(piece)
        return b.raise_first(outcomes, return_exceptions)

    async def _stream(self, requests: list[hsm_pb2.SignStreamRequest]) -> list[Any]:
        """Every response of one SignStream carrying *requests* (deadline: the timeout)."""
        call = self.hsm.SignStream(
            iter(requests), metadata=self.metadata or None, timeout=self.timeout
        )
        try:
            return [response async for response in call]
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from err

    async def sign_stream(
        self,
        requests: Iterable[hsm_pb2.SignStreamRequest] | AsyncIterable[hsm_pb2.SignStreamRequest],
    ) -> AsyncIterator[hsm_pb2.SignStreamResponse]:
        """Bulk signing on one stream; per-item failures are in each response's ``error``.

        *requests* may be an iterable or an async iterable (produce while you consume).
        """
        source = requests if isinstance(requests, AsyncIterable) else iter(requests)
        call = self.hsm.SignStream(source, metadata=self.metadata or None)
        try:
            async for response in call:
                yield response
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from err
        finally:
            call.cancel()  # a consumer that stops early must not leave the stream open


def connect(
    target: str | None = None,
    *,
    cacert: PathLike | None = None,
    cert: PathLike | None = None,
    key: PathLike | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    plaintext: bool = False,
    server_name: str | None = None,
    health_service: str | None = "",
    keepalive_ms: int = DEFAULT_KEEPALIVE_MS,
    metadata: Sequence[tuple[str, str]] = (),
) -> AsyncClient:
    """An :class:`AsyncClient`; the arguments are those of :func:`hwgate.connect`.

    Call it inside a running event loop (grpc.aio channels belong to one loop).
    """
    spec = channel_spec(
        target,
        cacert=cacert,
        cert=cert,
        key=key,
        plaintext=plaintext,
        server_name=server_name,
        health_service=health_service,
        keepalive_ms=keepalive_ms,
    )
    return AsyncClient(open_aio_channel(spec), timeout=timeout, metadata=metadata)
