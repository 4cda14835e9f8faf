"""Exceptions built from hwgated's rich error status (AIP-193).

hwgated reports every failure as a gRPC status code plus a ``google.rpc.Status``
in the ``grpc-status-details-bin`` trailer that holds one
``google.rpc.ErrorInfo`` (domain ``hwgate.v1``, reason = an ``ErrorReason``
name, metadata). Programs should branch on the exception class (or ``reason``),
never on the message. The mapping is generated from the ``ErrorReason`` enum:
every reason has a class named after it in CapWords with an ``Error`` suffix
(``HSM_WORKER_LOST`` -> ``HsmWorkerLostError``); the common ones also have the
short aliases below (``PinIncorrect``, ``CardRemoved``, ...). A reason this
client does not know yet (a newer daemon) still raises plain ``HwgateError``.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2

from hwgate.v1 import error_pb2

DOMAIN = "hwgate.v1"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class HwgateError(Exception):
    """A failed hwgate RPC: status ``code``, ErrorInfo ``reason`` and ``metadata``.

    ``reason`` is "" when the server sent no ErrorInfo (e.g. a connection error
    raised by the gRPC library itself, or a server that is not hwgated).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})

    def __str__(self) -> str:
        head = f"{self.code.name}"
        if self.reason:
            head += f" {self.reason}"
        return f"{head}: {self.message}"


class PcscUnavailable(HwgateError):
    """pcscd is down or unreachable (PCSC_UNAVAILABLE); retry later."""


class ReaderNotFound(HwgateError):
    """No such reader, or the policy hides it (READER_NOT_FOUND)."""


class CardNotPresent(HwgateError):
    """The reader is empty (CARD_NOT_PRESENT)."""


class CardRemoved(HwgateError):
    """The card was pulled or reset mid-operation (CARD_REMOVED); assume nothing happened."""


class SessionNotFound(HwgateError):
    """Unknown, closed or expired session (SESSION_NOT_FOUND)."""


class SessionExpired(SessionNotFound):
    """Your session ended because no call used it for its TTL (SESSION_EXPIRED).

    A SessionNotFound too: the session is gone either way, and code written
    before the daemon told expiry apart keeps catching it.
    """


class ReaderBusy(HwgateError):
    """Another session held the reader past the deadline (READER_BUSY)."""


class PinIncorrect(HwgateError):
    """Wrong PIN (PIN_INCORRECT); ``retries_left`` as the card reports it (None if unknown)."""

    @property
    def retries_left(self) -> int | None:
        value = self.metadata.get("retries_left", "")
        return int(value) if value.isdigit() else None


class PinBlocked(HwgateError):
    """The PIN retry counter is 0 (PIN_BLOCKED); needs the PUK."""


class LastPinAttempt(HwgateError):
    """One retry left and allow_last_attempt was not set (LAST_PIN_ATTEMPT); nothing was sent."""

    retries_left = 1


class PukIncorrect(HwgateError):
    """Wrong PUK (PUK_INCORRECT); ``retries_left`` as the card reports it (None if unknown)."""

    @property
    def retries_left(self) -> int | None:
        value = self.metadata.get("retries_left", "")
        return int(value) if value.isdigit() else None


class PukBlocked(HwgateError):
    """The PUK retry counter is 0 (PUK_BLOCKED): the PIN cannot be unblocked any more."""


class LastPukAttempt(HwgateError):
    """The card last reported one PUK retry and allow_last_puk_attempt was not set
    (LAST_PUK_ATTEMPT); nothing was sent."""

    retries_left = 1


class PinRequired(HwgateError):
    """The operation needs VerifyPin first in this session (PIN_REQUIRED)."""


class PinFormat(HwgateError):
    """The PIN is not 6 to 8 ASCII digits (PIN_FORMAT)."""


class KeyNotFound(HwgateError):
    """No key matches the reference, or the policy hides it (KEY_NOT_FOUND)."""


class KeyExists(HwgateError):
    """A key with that label already exists (KEY_EXISTS)."""


class HsmUnavailable(HwgateError):
    """The PKCS#11 module or token is not available (HSM_UNAVAILABLE); retry later."""


class HsmWorkerLost(HwgateError):
    """The HSM worker crashed or hung and was replaced (HSM_WORKER_LOST); may be retried."""


class PolicyDenied(HwgateError):
    """The caller's role may not do this (POLICY_DENIED); metadata ``rule`` says which rule."""


class SubscriberTooSlow(HwgateError):
    """A WatchEvents stream fell behind and was cut off (SUBSCRIBER_TOO_SLOW)."""


class ShuttingDown(HwgateError):
    """The daemon is stopping (SHUTTING_DOWN); reconnect."""


_NAMED: dict[str, type[HwgateError]] = {
    "PCSC_UNAVAILABLE": PcscUnavailable,
    "READER_NOT_FOUND": ReaderNotFound,
    "CARD_NOT_PRESENT": CardNotPresent,
    "CARD_REMOVED": CardRemoved,
    "SESSION_NOT_FOUND": SessionNotFound,
    "SESSION_EXPIRED": SessionExpired,
    "READER_BUSY": ReaderBusy,
    "PIN_INCORRECT": PinIncorrect,
    "PIN_BLOCKED": PinBlocked,
    "LAST_PIN_ATTEMPT": LastPinAttempt,
    "PIN_REQUIRED": PinRequired,
    "PIN_FORMAT": PinFormat,
    "PUK_INCORRECT": PukIncorrect,
    "PUK_BLOCKED": PukBlocked,
    "LAST_PUK_ATTEMPT": LastPukAttempt,
    "KEY_NOT_FOUND": KeyNotFound,
    "KEY_EXISTS": KeyExists,
    "HSM_UNAVAILABLE": HsmUnavailable,
    "HSM_WORKER_LOST": HsmWorkerLost,
    "POLICY_DENIED": PolicyDenied,
    "SUBSCRIBER_TOO_SLOW": SubscriberTooSlow,
    "SHUTTING_DOWN": ShuttingDown,
}


def class_name(reason: str) -> str:
    """The generated class name of a reason: CARD_ERROR -> CardError."""
    return "".join(part.capitalize() for part in reason.split("_"))


def _generated(reason: str) -> type[HwgateError]:
    doc = f"ErrorReason {reason} (see protos/hwgate/v1/error.proto)."
    return type(class_name(reason), (HwgateError,), {"__doc__": doc, "__module__": __name__})


# Generated from the enum so no ErrorReason value is ever without a class.
REASON_CLASSES: dict[str, type[HwgateError]] = {
    name: _NAMED.get(name) or _generated(name)
    for name in error_pb2.ErrorReason.keys()  # noqa: SIM118 (an enum wrapper, not a dict)
    if name != "ERROR_REASON_UNSPECIFIED"
}
for _cls in REASON_CLASSES.values():
    globals().setdefault(_cls.__name__, _cls)  # hwgate.errors.CardError, .HsmLoginFailed, ...


def error_info_of(trailers: object) -> tuple[str, dict[str, str]]:
    """(reason, metadata) of the hwgate ErrorInfo in a call's trailing metadata."""
    for key, value in trailers or ():  # type: ignore[attr-defined]
        if key == _STATUS_DETAILS_KEY:
            return _error_info(status_pb2.Status.FromString(value))
    return "", {}


def _error_info(status: status_pb2.Status) -> tuple[str, dict[str, str]]:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain in (DOMAIN, ""):
                return info.reason, dict(info.metadata)
    return "", {}


def from_status_message(status: status_pb2.Status) -> HwgateError:
    """The exception for a ``google.rpc.Status`` carried in a message, e.g. the
    ``error`` of a failed SignStream item: the same class, reason and metadata
    a unary call failing that way raises."""
    try:
        code = _CODES[status.code]
    except KeyError:
        code = grpc.StatusCode.UNKNOWN
    reason, metadata = _error_info(status)
    return from_status(code, status.message, reason, metadata)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def from_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str]
) -> HwgateError:
    """The most specific exception for a reason; HwgateError when unknown."""
    cls = REASON_CLASSES.get(reason, HwgateError)
    return cls(code, message, reason, metadata)


def from_rpc_error(err: grpc.RpcError) -> HwgateError:
    """Translate a grpc error (sync or aio) into the hwgate hierarchy."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    reason, metadata = error_info_of(trailers)
    exc = from_status(code, details or "", reason, metadata)
    exc.__cause__ = err
    return exc
