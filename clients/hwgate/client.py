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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hwgate import errors, names
from hwgate.channel import DEFAULT_KEEPALIVE_MS, channel_spec, open_channel
from hwgate.events import EventStream
from hwgate.resume import ResumeState
from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc, piv_pb2, piv_pb2_grpc

T = TypeVar("T")
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


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    result = duration_pb2.Duration()
    result.FromNanoseconds(int(seconds * 1e9))
    return result


def _pin_bytes(pin: str | bytes | bytearray) -> bytes:
    return pin.encode("ascii") if isinstance(pin, str) else bytes(pin)


@dataclass
class CardSession:
    """An open session on one reader (see :meth:`Client.card_session`)."""

    client: Client
    reader: str
    session_id: str

    def get_card_info(self) -> piv_pb2.GetCardInfoResponse:
        return self.client.get_card_info(session_id=self.session_id)

    def verify_pin(self, pin: str | bytes | bytearray, allow_last_attempt: bool = False) -> None:
        self.client.verify_pin(self.session_id, pin, allow_last_attempt=allow_last_attempt)

    def authenticate(self, origin: str, challenge: bytes) -> piv_pb2.AuthenticateResponse:
        return self.client.authenticate(self.session_id, origin, challenge)

    def sign(
        self, digest: bytes, algorithm: names.SignatureAlgorithmLike, slot: int = 0
    ) -> piv_pb2.PivServiceSignResponse:
        return self.client.piv_sign(self.session_id, digest, algorithm, slot=slot)

    def transmit(
        self, apdus: Sequence[bytes], auto_response: bool = False
    ) -> list[card_pb2.ResponseApdu]:
        return self.client.transmit(apdus, session_id=self.session_id, auto_response=auto_response)


class Client:
    """A connection to one hwgated (or a round_robin set of them). Use :func:`hwgate.connect`."""

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

    def _call(self, method: Callable[..., T], request: Any, **kwargs: Any) -> T:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return method(request, metadata=self.metadata or None, **kwargs)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from err

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected; HwgateError(UNAVAILABLE) if not in time."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise errors.HwgateError(
                grpc.StatusCode.UNAVAILABLE, f"not connected within {timeout}s"
            ) from None

    # --- health ---

    def health(self, service: str = "") -> str:
        """grpc.health.v1 status name of *service* ("" = the server): SERVING, NOT_SERVING..."""
        request = health_pb2.HealthCheckRequest(service=service)
        response = self._call(self._health.Check, request)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    # --- CardService ---

    def list_readers(self) -> list[card_pb2.Reader]:
        """The readers the caller may see, sorted by name."""
        return list(self._call(self.card.ListReaders, card_pb2.ListReadersRequest()).readers)

    def watch_events(
        self,
        reader_patterns: Sequence[str] = (),
        types: Sequence[int] = (),
        *,
        after_sequence: int = 0,
        resume: bool = True,
    ) -> EventStream:
        """Reader and card events, snapshot first; resumes across drops (see EventStream)."""
        state = ResumeState(after_sequence, list(reader_patterns), list(types))
        return EventStream(self.card, state, self.metadata or None, resume)

    def open_session(self, reader: str, ttl: float | None = None) -> card_pb2.OpenSessionResponse:
        request = card_pb2.OpenSessionRequest(reader=reader, ttl=_duration(ttl))
        return self._call(self.card.OpenSession, request)

    def close_session(self, session_id: str) -> None:
        self._call(self.card.CloseSession, card_pb2.CloseSessionRequest(session_id=session_id))

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
            with contextlib.suppress(errors.SessionNotFound):
                self.close_session(opened.session_id)

    def transmit(
        self,
        apdus: Sequence[bytes],
        *,
        reader: str | None = None,
        session_id: str | None = None,
        auto_response: bool = False,
    ) -> list[card_pb2.ResponseApdu]:
        """Raw APDUs to a reader (one job) or a session; one response per APDU."""
        request = card_pb2.TransmitRequest(
            reader=reader, session_id=session_id, apdus=list(apdus), auto_response=auto_response
        )
        return list(self._call(self.card.Transmit, request).responses)

    # --- PivService ---

    def get_card_info(
        self, reader: str | None = None, *, session_id: str | None = None
    ) -> piv_pb2.GetCardInfoResponse:
        request = piv_pb2.GetCardInfoRequest(reader=reader, session_id=session_id)
        return self._call(self.piv.GetCardInfo, request)

    def verify_pin(
        self, session_id: str, pin: str | bytes | bytearray, *, allow_last_attempt: bool = False
    ) -> None:
        """Verify the PIV PIN in a session. Raises PinIncorrect (retries_left), PinBlocked,
        LastPinAttempt. Never retried automatically."""
        request = piv_pb2.VerifyPinRequest(
            session_id=session_id, pin=_pin_bytes(pin), allow_last_attempt=allow_last_attempt
        )
        self._call(self.piv.VerifyPin, request)

    def authenticate(
        self, session_id: str, origin: str, challenge: bytes
    ) -> piv_pb2.AuthenticateResponse:
        request = piv_pb2.AuthenticateRequest(
            session_id=session_id, origin=origin, challenge=challenge
        )
        return self._call(self.piv.Authenticate, request)

    def piv_sign(
        self,
        session_id: str,
        digest: bytes,
        algorithm: names.SignatureAlgorithmLike,
        *,
        slot: int = 0,
    ) -> piv_pb2.PivServiceSignResponse:
        request = piv_pb2.PivServiceSignRequest(
            session_id=session_id,
            slot=slot,  # type: ignore[arg-type]
            digest=digest,
            algorithm=names.signature_algorithm(algorithm),  # type: ignore[arg-type]
        )
        return self._call(self.piv.Sign, request)

    # --- HsmService ---

    def list_keys(self, token: str = "", label_pattern: str = "") -> list[hsm_pb2.KeyInfo]:
        request = hsm_pb2.ListKeysRequest(token=token, label_pattern=label_pattern)
        return list(self._call(self.hsm.ListKeys, request).keys)

    def get_public_key(self, key: names.KeyRefLike) -> hsm_pb2.GetPublicKeyResponse:
        request = hsm_pb2.GetPublicKeyRequest(key=names.key_ref(key))
        return self._call(self.hsm.GetPublicKey, request)

    def sign(
        self,
        key: names.KeyRefLike,
        algorithm: names.SignatureAlgorithmLike,
        *,
        digest: bytes = b"",
        data: bytes = b"",
    ) -> bytes:
        """Sign a digest (asymmetric) or data (HMAC) in the HSM; the signature bytes."""
        request = hsm_pb2.SignRequest(
            key=names.key_ref(key),
            algorithm=names.signature_algorithm(algorithm),  # type: ignore[arg-type]
            digest=digest,
            data=data,
        )
        return bytes(self._call(self.hsm.Sign, request).signature)

    def sign_stream(
        self, requests: Iterable[hsm_pb2.SignStreamRequest]
    ) -> Iterator[hsm_pb2.SignStreamResponse]:
        """Bulk signing on one stream; per-item failures are in each response's ``error``."""
        try:
            yield from self.hsm.SignStream(iter(requests), metadata=self.metadata or None)
        except grpc.RpcError as err:
            raise errors.from_rpc_error(err) from err

    def derive(self, request: hsm_pb2.DeriveRequest) -> hsm_pb2.DeriveResponse:
        """HsmService.Derive; build the request with :func:`hwgate.ecdh_request` & co or by hand."""
        return self._call(self.hsm.Derive, request)

    def generate_key_pair(
        self,
        label: str,
        algorithm: str | int,
        *,
        token: str = "",
        ephemeral: bool = False,
        extractable: bool = False,
        usages: Sequence[int] = (),
    ) -> hsm_pb2.KeyInfo:
        request = hsm_pb2.GenerateKeyPairRequest(
            token=token,
            label=label,
            algorithm=names.key_algorithm(algorithm),  # type: ignore[arg-type]
            ephemeral=ephemeral,
            extractable=extractable,
            usages=list(usages),  # type: ignore[arg-type]
        )
        return self._call(self.hsm.GenerateKeyPair, request).key

    def delete_key(self, key: names.KeyRefLike) -> int:
        """Destroy a key; the number of PKCS#11 objects destroyed."""
        request = hsm_pb2.DeleteKeyRequest(key=names.key_ref(key))
        return int(self._call(self.hsm.DeleteKey, request).deleted_objects)

    def hsm_key(self, key: names.KeyRefLike) -> Any:
        """The HSM key as a ``cryptography`` private key (EC or RSA) that signs remotely.

        See :mod:`hwgate.remote_key`: ``x509.CertificateBuilder().sign(key, SHA256())``
        works unchanged. The public key is fetched once, here.
        """
        from hwgate.remote_key import remote_key

        return remote_key(self, names.key_ref(key))


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
