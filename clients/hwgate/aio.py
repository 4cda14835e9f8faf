"""The asyncio client: the same methods as :class:`hwgate.Client`, awaitable.

``watch_events`` returns an async iterator with the same resume behaviour as
the blocking one (see :mod:`hwgate.resume`). ``hsm_key`` is only on the
blocking client, because cryptography's ``sign()`` is synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hwgate import errors, names
from hwgate.channel import DEFAULT_KEEPALIVE_MS, channel_spec, open_aio_channel
from hwgate.client import DEFAULT_TIMEOUT, PathLike, _duration, _pin_bytes
from hwgate.resume import ResumeState, resumable
from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc, piv_pb2, piv_pb2_grpc


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


@dataclass
class AsyncCardSession:
    """An open session (see :meth:`AsyncClient.card_session`)."""

    client: AsyncClient
    reader: str
    session_id: str

    async def get_card_info(self) -> piv_pb2.GetCardInfoResponse:
        return await self.client.get_card_info(session_id=self.session_id)

    async def verify_pin(self, pin: str | bytes | bytearray, allow_last: bool = False) -> None:
        await self.client.verify_pin(self.session_id, pin, allow_last_attempt=allow_last)


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

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def health(self, service: str = "") -> str:
        response = await self._call(
            self._health.Check, health_pb2.HealthCheckRequest(service=service)
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def list_readers(self) -> list[card_pb2.Reader]:
        response = await self._call(self.card.ListReaders, card_pb2.ListReadersRequest())
        return list(response.readers)

    def watch_events(
        self,
        reader_patterns: Sequence[str] = (),
        types: Sequence[int] = (),
        *,
        after_sequence: int = 0,
        resume: bool = True,
    ) -> AsyncEventStream:
        state = ResumeState(after_sequence, list(reader_patterns), list(types))
        return AsyncEventStream(self.card, state, self.metadata or None, resume)

    async def open_session(
        self, reader: str, ttl: float | None = None
    ) -> card_pb2.OpenSessionResponse:
        request = card_pb2.OpenSessionRequest(reader=reader, ttl=_duration(ttl))
        result: card_pb2.OpenSessionResponse = await self._call(self.card.OpenSession, request)
        return result

    async def close_session(self, session_id: str) -> None:
        request = card_pb2.CloseSessionRequest(session_id=session_id)
        await self._call(self.card.CloseSession, request)

    @contextlib.asynccontextmanager
    async def card_session(
        self, reader: str, ttl: float | None = None
    ) -> AsyncIterator[AsyncCardSession]:
        """Open a session; always closed on exit (an already-gone session is fine)."""
        opened = await self.open_session(reader, ttl)
        try:
            yield AsyncCardSession(self, reader, opened.session_id)
        finally:
            with contextlib.suppress(errors.SessionNotFound):
                await self.close_session(opened.session_id)

    async def transmit(
        self,
        apdus: Sequence[bytes],
        *,
        reader: str | None = None,
        session_id: str | None = None,
        auto_response: bool = False,
    ) -> list[card_pb2.ResponseApdu]:
        request = card_pb2.TransmitRequest(
            reader=reader, session_id=session_id, apdus=list(apdus), auto_response=auto_response
        )
        return list((await self._call(self.card.Transmit, request)).responses)

    async def get_card_info(
        self, reader: str | None = None, *, session_id: str | None = None
    ) -> piv_pb2.GetCardInfoResponse:
        request = piv_pb2.GetCardInfoRequest(reader=reader, session_id=session_id)
        result: piv_pb2.GetCardInfoResponse = await self._call(self.piv.GetCardInfo, request)
        return result

    async def verify_pin(
        self, session_id: str, pin: str | bytes | bytearray, *, allow_last_attempt: bool = False
    ) -> None:
        request = piv_pb2.VerifyPinRequest(
            session_id=session_id, pin=_pin_bytes(pin), allow_last_attempt=allow_last_attempt
        )
        await self._call(self.piv.VerifyPin, request)

    async def list_keys(self, token: str = "", label_pattern: str = "") -> list[hsm_pb2.KeyInfo]:
        request = hsm_pb2.ListKeysRequest(token=token, label_pattern=label_pattern)
        return list((await self._call(self.hsm.ListKeys, request)).keys)

    async def get_public_key(self, key: names.KeyRefLike) -> hsm_pb2.GetPublicKeyResponse:
        request = hsm_pb2.GetPublicKeyRequest(key=names.key_ref(key))
        result: hsm_pb2.GetPublicKeyResponse = await self._call(self.hsm.GetPublicKey, request)
        return result

    async def sign(
        self,
        key: names.KeyRefLike,
        algorithm: names.SignatureAlgorithmLike,
        *,
        digest: bytes = b"",
        data: bytes = b"",
    ) -> bytes:
        request = hsm_pb2.SignRequest(
            key=names.key_ref(key),
            algorithm=names.signature_algorithm(algorithm),  # type: ignore[arg-type]
            digest=digest,
            data=data,
        )
        return bytes((await self._call(self.hsm.Sign, request)).signature)

    async def derive(self, request: hsm_pb2.DeriveRequest) -> hsm_pb2.DeriveResponse:
        result: hsm_pb2.DeriveResponse = await self._call(self.hsm.Derive, request)
        return result

    async def generate_key_pair(
        self, label: str, algorithm: str | int, *, token: str = "", ephemeral: bool = False
    ) -> hsm_pb2.KeyInfo:
        request = hsm_pb2.GenerateKeyPairRequest(
            token=token,
            label=label,
            algorithm=names.key_algorithm(algorithm),  # type: ignore[arg-type]
            ephemeral=ephemeral,
        )
        return (await self._call(self.hsm.GenerateKeyPair, request)).key  # type: ignore[no-any-return]

    async def delete_key(self, key: names.KeyRefLike) -> int:
        request = hsm_pb2.DeleteKeyRequest(key=names.key_ref(key))
        return int((await self._call(self.hsm.DeleteKey, request)).deleted_objects)


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
