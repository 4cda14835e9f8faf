"""Every unary hwgated call, described once for both clients.

Each function here takes a client method's parameters and returns a
:class:`Call`: which stub method to call, the request message, and how the
response becomes the method's result. The functions are pure (no I/O), so the
blocking :class:`hwgate.Client` and the asyncio :class:`hwgate.aio.AsyncClient`
cannot drift apart: both turn the same functions into methods with
:func:`as_method`, which gives the method the function's name, docstring and
signature. The ``session_*`` functions are the same calls with the session id
first; the session objects bind it.

A call that takes several RPCs (a paged list, :class:`PagedCall`) says so in
its :meth:`Call.exchange` generator, which both clients drive the same way:
they send each request it yields and hand back the response, until it returns
the result.
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2

from hwgate import names
from hwgate.errors import HwgateError
from hwgate.v1 import card_pb2, hsm_pb2, piv_pb2

R = TypeVar("R")
Item = TypeVar("Item")
Pin = str | bytes | bytearray


@dataclass(frozen=True)
class Call(Generic[R]):
    """One unary RPC ready to send: ``stub`` names the client's stub attribute."""

    stub: str
    method: str
    request: Any
    result: Callable[[Any], R]

    def exchange(self) -> Generator[Any, Any, R]:
        """Yield each request to send, receive its response; return the call's result."""
        response = yield self.request
        return self.result(response)


@dataclass(frozen=True)
class PagedCall(Call[list[Item]]):
    """An AIP-158 list RPC, every page of it: ``result`` picks one response's items.

    Pages are asked for with the same request and the previous response's
    ``next_page_token`` until that is empty, and their items joined, so callers
    get the whole list as from an unpaged call.
    """

    def exchange(self) -> Generator[Any, Any, list[Item]]:
        request = self.request
        items: list[Item] = []
        while True:
            response = yield request
            items.extend(self.result(response))
            token = response.next_page_token
            if not token:
                return items
            if token == request.page_token:  # a server bug; never loop on it
                raise HwgateError(
                    grpc.StatusCode.INTERNAL, f"{self.method} returned the same page token again"
                )
            request = type(request)()
            request.CopyFrom(self.request)
            request.page_token = token


def _session_expire_time(
    response: piv_pb2.VerifyPinResponse | piv_pb2.ChangePinResponse | piv_pb2.UnblockPinResponse,
) -> datetime.datetime:
    return response.session_expire_time.ToDatetime(datetime.UTC)


def _none(_response: object) -> None:
    return None


def _same(response: Any) -> Any:
    return response


def duration(seconds: float | None) -> duration_pb2.Duration | None:
    """A protobuf Duration, or None (the field left unset) for None."""
    if seconds is None:
        return None
    result = duration_pb2.Duration()
    result.FromNanoseconds(int(seconds * 1e9))
    return result


def pin_bytes(pin: Pin) -> bytes:
    """PINs travel as bytes; a str is taken as ASCII digits."""
    return pin.encode("ascii") if isinstance(pin, str) else bytes(pin)


# --- health ---


def health(service: str = "") -> Call[str]:
    """grpc.health.v1 status name of *service* ("" = the server): SERVING, NOT_SERVING..."""
    return Call(
        "_health",
        "Check",
        health_pb2.HealthCheckRequest(service=service),
        lambda r: str(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)),
    )


# --- CardService ---


def list_readers() -> Call[list[card_pb2.Reader]]:
    """The readers the caller may see, sorted by name."""
    return Call("card", "ListReaders", card_pb2.ListReadersRequest(), lambda r: list(r.readers))


def open_session(reader: str, ttl: float | None = None) -> Call[card_pb2.OpenSessionResponse]:
    """Hold *reader* exclusively until CloseSession or *ttl* seconds (None = the daemon's)."""
    request = card_pb2.OpenSessionRequest(reader=reader, ttl=duration(ttl))
    return Call("card", "OpenSession", request, _same)


def close_session(session_id: str) -> Call[None]:
    """End a session (SessionNotFound if it is already gone, SessionExpired or
    CardRemoved if it ended recently by its TTL or by the card leaving)."""
    return Call("card", "CloseSession", card_pb2.CloseSessionRequest(session_id=session_id), _none)


def transmit(
    apdus: Sequence[bytes],
    *,
    reader: str | None = None,
    session_id: str | None = None,
    auto_response: bool = False,
) -> Call[list[card_pb2.ResponseApdu]]:
    """Raw APDUs to a reader (one job) or a session; one response per APDU."""
    request = card_pb2.TransmitRequest(
        reader=reader, session_id=session_id, apdus=list(apdus), auto_response=auto_response
    )
    return Call("card", "Transmit", request, lambda r: list(r.responses))


# --- PivService ---


def get_card_info(
    reader: str | None = None, *, session_id: str | None = None
) -> Call[piv_pb2.GetCardInfoResponse]:
    """The PIV card's identity, certificates and PIN state, by reader or in a session."""
    request = piv_pb2.GetCardInfoRequest(reader=reader, session_id=session_id)
    return Call("piv", "GetCardInfo", request, _same)


def verify_pin(
    session_id: str, pin: Pin, *, allow_last_attempt: bool = False
) -> Call[datetime.datetime]:
    """Verify the PIV PIN in a session; when the session (and the verified PIN) ends
    unless used before. Raises PinIncorrect (retries_left), PinBlocked,
    LastPinAttempt. Never retried automatically."""
    request = piv_pb2.VerifyPinRequest(
        session_id=session_id, pin=pin_bytes(pin), allow_last_attempt=allow_last_attempt
    )
    return Call("piv", "VerifyPin", request, _session_expire_time)


def change_pin(
    session_id: str, old_pin: Pin, new_pin: Pin, *, allow_last_attempt: bool = False
) -> Call[datetime.datetime]:
    """Change the PIV PIN in a session (the PIN is not verified afterwards); when the
    session ends unless used before. Raises PinFormat (nothing sent), PinIncorrect
    (retries_left), PinBlocked, LastPinAttempt. Never retried automatically."""
    request = piv_pb2.ChangePinRequest(
        session_id=session_id,
        old_pin=pin_bytes(old_pin),
        new_pin=pin_bytes(new_pin),
        allow_last_attempt=allow_last_attempt,
    )
    return Call("piv", "ChangePin", request, _session_expire_time)


def unblock_pin(
    session_id: str, puk: Pin, new_pin: Pin, *, allow_last_puk_attempt: bool = False
) -> Call[datetime.datetime]:
    """Set a new PIV PIN with the PUK (8 bytes), resetting the PIN's retry counter; when
    the session ends unless used before. Raises PinFormat (nothing sent), PukIncorrect
    (retries_left), PukBlocked, LastPukAttempt. Never retried automatically."""
    request = piv_pb2.UnblockPinRequest(
        session_id=session_id,
        puk=pin_bytes(puk),
        new_pin=pin_bytes(new_pin),
        allow_last_puk_attempt=allow_last_puk_attempt,
    )
    return Call("piv", "UnblockPin", request, _session_expire_time)


def authenticate(
    session_id: str, origin: str, challenge: bytes
) -> Call[piv_pb2.AuthenticateResponse]:
    """Sign an origin-bound digest of *challenge* with the 9A key (PIN verified first)."""
    request = piv_pb2.AuthenticateRequest(session_id=session_id, origin=origin, challenge=challenge)
    return Call("piv", "Authenticate", request, _same)


def piv_sign(
    session_id: str,
    digest: bytes,
    algorithm: names.SignatureAlgorithmLike,
    *,
    slot: int = 0,
) -> Call[piv_pb2.PivServiceSignResponse]:
    """Sign *digest* with a PIV slot's key (0 = the daemon's default slot)."""
    request = piv_pb2.PivServiceSignRequest(
        session_id=session_id,
        slot=slot,  # type: ignore[arg-type]
        digest=digest,
        algorithm=names.signature_algorithm(algorithm),  # type: ignore[arg-type]
    )
    return Call("piv", "Sign", request, _same)


# --- HsmService ---


def list_keys(
    token: str = "", label_pattern: str = "", *, page_size: int = 0
) -> Call[list[hsm_pb2.KeyInfo]]:
    """Every HSM key the caller may use, optionally filtered by token and label glob.

    Fetched *page_size* keys per RPC (0 = the daemon's default) until the last page.
    """
    request = hsm_pb2.ListKeysRequest(token=token, label_pattern=label_pattern, page_size=page_size)
    return PagedCall("hsm", "ListKeys", request, lambda r: list(r.keys))


def get_public_key(key: names.KeyRefLike) -> Call[hsm_pb2.GetPublicKeyResponse]:
    """The public key (DER SubjectPublicKeyInfo and PEM) of an asymmetric HSM key."""
    request = hsm_pb2.GetPublicKeyRequest(key=names.key_ref(key))
    return Call("hsm", "GetPublicKey", request, _same)


def sign(
    key: names.KeyRefLike,
    algorithm: names.SignatureAlgorithmLike,
    *,
    digest: bytes | None = None,
    data: bytes | None = None,
) -> Call[bytes]:
    """Sign a digest (asymmetric) or data (HMAC) in the HSM; the signature bytes."""
    if (digest is None) == (data is None):
        raise ValueError("give either digest (asymmetric algorithms) or data (HMAC)")
    request = hsm_pb2.HsmServiceSignRequest(
        key=names.key_ref(key),
        algorithm=names.signature_algorithm(algorithm),  # type: ignore[arg-type]
    )
    if digest is not None:
        request.digest = digest
    else:
        request.data = data  # type: ignore[assignment]
    return Call("hsm", "Sign", request, lambda r: bytes(r.signature))


def derive(request: hsm_pb2.DeriveRequest) -> Call[hsm_pb2.DeriveResponse]:
    """HsmService.Derive; the request's ``mechanism`` oneof carries the parameters."""
    return Call("hsm", "Derive", request, _same)


def generate_key(
    label: str,
    algorithm: str | int,
    *,
    token: str = "",
    ephemeral: bool = False,
    extractable: bool = False,
    usages: Sequence[int] = (),
) -> Call[hsm_pb2.KeyInfo]:
    """Create a key in the HSM; *ephemeral* keys vanish when the daemon stops."""
    request = hsm_pb2.GenerateKeyRequest(
        token=token,
        label=label,
        algorithm=names.key_algorithm(algorithm),  # type: ignore[arg-type]
        ephemeral=ephemeral,
        extractable=extractable,
        usages=list(usages),  # type: ignore[arg-type]
    )
    return Call("hsm", "GenerateKey", request, lambda r: r.key)


def delete_key(key: names.KeyRefLike) -> Call[int]:
    """Destroy a key; the number of PKCS#11 objects destroyed."""
    request = hsm_pb2.DeleteKeyRequest(key=names.key_ref(key))
    return Call("hsm", "DeleteKey", request, lambda r: int(r.deleted_objects))


def wrap_key(
    key: names.KeyRefLike, wrapping_key: names.KeyRefLike
) -> Call[hsm_pb2.WrapKeyResponse]:
    """Wrap a key marked for escrow under a wrapping key (AES key wrap with padding,
    RFC 5649); the response's ``wrapped_key`` is the blob, ``key`` describes the key."""
    request = hsm_pb2.WrapKeyRequest(
        key=names.key_ref(key), wrapping_key=names.key_ref(wrapping_key)
    )
    return Call("hsm", "WrapKey", request, _same)


def unwrap_key(
    wrapping_key: names.KeyRefLike,
    wrapped_key: bytes,
    label: str,
    algorithm: str | int,
    *,
    usages: Sequence[int] = (),
    extractable: bool = False,
    ephemeral: bool = False,
    id: bytes = b"",  # the PKCS#11 attribute name
) -> Call[hsm_pb2.KeyInfo]:
    """Unwrap *wrapped_key* into a new HSM key called *label* of *algorithm* ("ec-p256",
    "rsa-2048", "aes-256", ...); its description. The value never leaves the HSM."""
    template = hsm_pb2.UnwrappedKeyTemplate(
        label=label,
        id=id,
        algorithm=names.key_algorithm(algorithm),  # type: ignore[arg-type]
        usages=list(usages),  # type: ignore[arg-type]
        extractable=extractable,
        ephemeral=ephemeral,
    )
    request = hsm_pb2.UnwrapKeyRequest(
        wrapping_key=names.key_ref(wrapping_key), wrapped_key=wrapped_key, template=template
    )
    return Call("hsm", "UnwrapKey", request, lambda r: r.key)


def rewrap_for_peer(
    wrapping_key: names.KeyRefLike,
    wrapped_key: bytes,
    key_algorithm: str | int,
    peer_public_key: bytes,
) -> Call[hsm_pb2.RewrapForPeerResponse]:
    """Re-wrap an escrowed key (wrapped under *wrapping_key*) for the peer whose ephemeral
    P-256 public key (DER SPKI or uncompressed point) is given, in one HSM operation.

    The peer recovers the key with :func:`hwgate.recovery.recover_private_key` (or
    ``recover_secret``) from its private key and this response.
    """
    request = hsm_pb2.RewrapForPeerRequest(
        wrapping_key=names.key_ref(wrapping_key),
        wrapped_key=wrapped_key,
        key_algorithm=names.key_algorithm(key_algorithm),  # type: ignore[arg-type]
        peer_public_key=peer_public_key,
    )
    return Call("hsm", "RewrapForPeer", request, _same)


# --- the same calls inside a card session (the session id comes first) ---


def session_get_card_info(session_id: str) -> Call[piv_pb2.GetCardInfoResponse]:
    """The card's identity, certificates and PIN state as this session sees it."""
    return get_card_info(session_id=session_id)


def session_verify_pin(
    session_id: str, pin: Pin, allow_last_attempt: bool = False
) -> Call[datetime.datetime]:
    """Verify the PIV PIN in this session (see ``Client.verify_pin``)."""
    return verify_pin(session_id, pin, allow_last_attempt=allow_last_attempt)


def session_change_pin(
    session_id: str, old_pin: Pin, new_pin: Pin, allow_last_attempt: bool = False
) -> Call[datetime.datetime]:
    """Change the PIV PIN in this session (see ``Client.change_pin``)."""
    return change_pin(session_id, old_pin, new_pin, allow_last_attempt=allow_last_attempt)


def session_unblock_pin(
    session_id: str, puk: Pin, new_pin: Pin, allow_last_puk_attempt: bool = False
) -> Call[datetime.datetime]:
    """Set a new PIV PIN with the PUK in this session (see ``Client.unblock_pin``)."""
    return unblock_pin(session_id, puk, new_pin, allow_last_puk_attempt=allow_last_puk_attempt)


def session_authenticate(
    session_id: str, origin: str, challenge: bytes
) -> Call[piv_pb2.AuthenticateResponse]:
    """Origin-bound 9A signature of *challenge* (see ``Client.authenticate``)."""
    return authenticate(session_id, origin, challenge)


def session_sign(
    session_id: str, digest: bytes, algorithm: names.SignatureAlgorithmLike, slot: int = 0
) -> Call[piv_pb2.PivServiceSignResponse]:
    """Sign *digest* with a PIV slot's key (see ``Client.piv_sign``)."""
    return piv_sign(session_id, digest, algorithm, slot=slot)


def session_transmit(
    session_id: str, apdus: Sequence[bytes], auto_response: bool = False
) -> Call[list[card_pb2.ResponseApdu]]:
    """Raw APDUs inside this session; one response per APDU."""
    return transmit(apdus, session_id=session_id, auto_response=auto_response)


SESSION_PREFIX = "session_"


def as_method(
    method: Callable[..., Any], build: Callable[..., Any], owner: str, *, bound: int = 0
) -> Any:
    """Dress *method* (``self, *args, **kwargs``) as the call *build* describes.

    It gets *build*'s name (``session_`` dropped, qualified by the class name
    *owner*), docstring and signature, with ``self`` in front and the first
    *bound* parameters left out (they come from the object, like a session's
    id), so ``help()``, ``inspect.signature`` and the parity test see the real
    parameters.
    """
    signature = inspect.signature(build)
    params = list(signature.parameters.values())[bound:]
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    name = build.__name__.removeprefix(SESSION_PREFIX) if bound else build.__name__
    method.__name__ = name
    method.__qualname__ = f"{owner}.{name}"
    method.__doc__ = build.__doc__
    result = signature.return_annotation  # "Call[X]" (postponed annotations): the method returns X
    if isinstance(result, str) and result.startswith("Call[") and result.endswith("]"):
        result = result[len("Call[") : -1]
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *params], return_annotation=result
    )
    return method
