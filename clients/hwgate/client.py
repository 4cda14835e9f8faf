"""The blocking client: one typed method per hwgated RPC.

Methods return the response messages of ``hwgate.v1`` (documented in the
.proto files) or, where a response only wraps one field, that field (a list
of ``Reader``, of ``KeyInfo``, the signature bytes). Every failure is raised
as :class:`hwgate.HwgateError` or one of its reason subclasses.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from hwgate import errors, names, readiness
from hwgate import requests as rq
from hwgate.channel import DEFAULT_KEEPALIVE_MS, channel_spec, open_channel
from hwgate.events import EventStream
from hwgate.resume import ResumeState
from hwgate.v1 import card_pb2_grpc, hsm_pb2, hsm_pb2_grpc, piv_pb2_grpc

T = TypeVar("T")
P = ParamSpec("P")
DEFAULT_TIMEOUT = 30.0
PathLike = str | os.PathLike[str]

# Hash functions of the signature algorithms, for callers that have the message.
HASHES: dict[str, Callable[[bytes], Any]] = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


def digest_for(algorithm: names.SignatureAlgorithmLike, message: bytes) -> bytes:
    """Hash *message* with the hash named by the signature algorithm (ecdsa-sha384 -> SHA-384)."""
    value = names.signature_algorithm(algorithm)
    name = names.kebab(names.common_pb2.SignatureAlgorithm, value, names.SIG_PREFIX)
    return bytes(HASHES[name.rsplit("-", 1)[1]](message).digest())


def _unary(build: Callable[P, rq.Call[T]]) -> Callable[Concatenate[Client, P], T]:
    """A :class:`Client` method that sends the call *build* describes."""

    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._invoke(build(*args, **kwargs))

    return rq.as_method(method, build, "Client")  # type: ignore[no-any-return]


def _in_session(
    build: Callable[Concatenate[str, P], rq.Call[T]],
) -> Callable[Concatenate[CardSession, P], T]:
    """A :class:`CardSession` method: *build* with the session's id first."""

    def method(self: CardSession, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.client._invoke(build(self.session_id, *args, **kwargs))

    return rq.as_method(method, build, "CardSession", bound=1)  # type: ignore[no-any-return]


@dataclass
class CardSession:
    """An open session on one reader (see :meth:`Client.card_session`)."""

    client: Client
    reader: str
    session_id: str

    get_card_info = _in_session(rq.session_get_card_info)
    verify_pin = _in_session(rq.session_verify_pin)
    change_pin = _in_session(rq.session_change_pin)
    unblock_pin = _in_session(rq.session_unblock_pin)
    authenticate = _in_session(rq.session_authenticate)
    sign = _in_session(rq.session_sign)
    transmit = _in_session(rq.session_transmit)


class Client:
    """A connection to one hwgated (or a round_robin set of them). Use :func:`hwgate.connect`.

    The unary methods come from :mod:`hwgate.requests`, shared with the asyncio
    client, whose methods have the same names, parameters and defaults.
    """

    def __init__(
        self,
        channel: grpc.Channel,
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
        self._coalescing: Any = None
        self._coalescer_lock = threading.Lock()

    def _call(self, method: Callable[..., T], request: Any, **kwargs: Any) -> T:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return method(request, metadata=self.metadata or None, **kwargs)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from err

    def _invoke(self, call: rq.Call[T]) -> T:
        stub_method = getattr(getattr(self, call.stub), call.method)
        steps = call.exchange()
        request = next(steps)
        while True:  # one RPC per request the call yields (several for a paged list)
            response = self._call(stub_method, request)
            try:
                request = steps.send(response)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected; HwgateError(UNAVAILABLE) if not in time."""
        # One Health/Check, not channel_ready_future: see hwgate.readiness.
        if not readiness.wait_ready(self.channel, timeout):
            message = f"not connected within {timeout}s"
            raise errors.HwgateError(grpc.StatusCode.UNAVAILABLE, message)

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
    ) -> EventStream:
        """Reader and card events, snapshot first; resumes across drops (see EventStream)."""
        state = ResumeState(after_sequence, list(reader_patterns), list(event_types))
        return EventStream(self.card, state, self.metadata or None, resume)

    @contextlib.contextmanager
    def card_session(self, reader: str, ttl: float | None = None) -> Iterator[CardSession]:
        """Open a session on *reader*; it is closed on exit, whatever happened inside.

        A session that is already gone when closing (card pulled, expired) is not
        an error: the goal, no session left open, holds.
        """
        opened = self.open_session(reader, ttl)
        try:
            yield CardSession(self, reader, opened.session_id)
        finally:
            # Ended meanwhile: expired (a SessionNotFound) or its card pulled.
            with contextlib.suppress(errors.SessionNotFound, errors.CardRemoved):
                self.close_session(opened.session_id)

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

    def sign_stream(
        self, requests: Iterable[hsm_pb2.SignStreamRequest]
    ) -> Iterator[hsm_pb2.SignStreamResponse]:
        """Bulk signing on one stream; per-item failures are in each response's ``error``."""
        try:
            yield from self.hsm.SignStream(iter(requests), metadata=self.metadata or None)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from err

    def sign_many(
        self,
        key: names.KeyRefLike,
        algorithm: names.SignatureAlgorithmLike,
        digests: Iterable[bytes],
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Sign every digest with one key; the signatures in digest order, in batches
        on one SignStream. A failed item raises its ``HwgateError`` (``item_index``
        set), or with *return_exceptions* stands in the list in place of its
        signature; see :func:`hwgate.batching.sign_many`."""
        from hwgate.batching import sign_many

        return sign_many(self, key, algorithm, digests, return_exceptions=return_exceptions)

    def hsm_key(self, key: names.KeyRefLike, *, coalesce: bool = True) -> Any:
        """The HSM key as a ``cryptography`` private key (EC or RSA) that signs remotely.

        See :mod:`hwgate.remote_key`: ``x509.CertificateBuilder().sign(key, SHA256())``
        works unchanged. The public key is fetched once, here. Blocking only:
        cryptography's ``sign()`` is synchronous. With *coalesce* (the default),
        ``sign()`` calls made at the same time by threads of this process share
        SignStream batches (:class:`hwgate.batching.CoalescingSigner`); a lone
        call is still one unary Sign.
        """
        from hwgate.remote_key import remote_key

        return remote_key(self._coalescer() if coalesce else self, names.key_ref(key))

    def _coalescer(self) -> Any:
        """The client's one CoalescingSigner, shared by its keys (made on first use)."""
        from hwgate.batching import CoalescingSigner

        with self._coalescer_lock:
            if self._coalescing is None:
                self._coalescing = CoalescingSigner(self)
            return self._coalescing


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
) -> Client:
    """A :class:`Client` for *target* (see :mod:`hwgate.channel` for the forms).

    *timeout* is the per-call deadline in seconds (None = none; streams never
    have one). TCP uses TLS: *cacert* verifies the server, *cert*/*key* are the
    client certificate; *plaintext* disables TLS (loopback test daemons only).
    The channel connects lazily; call ``wait_ready()`` to fail early.
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
    return Client(open_channel(spec), timeout=timeout, metadata=metadata)
