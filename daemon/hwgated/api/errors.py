"""The one place where errors become gRPC statuses (AIP-193).

Every failure leaves as a canonical status code plus a ``google.rpc.Status``
in the trailers holding one ``google.rpc.ErrorInfo`` (domain "hwgate.v1",
reason = an ErrorReason name, metadata). Domain errors carry their reason; PIV
status words and PKCS#11 errors that reach this far are mapped here. Anything
else is a bug: INTERNAL, logged with its traceback, and no detail leaks out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from hwgated.piv import errors as piv_errors

log = logging.getLogger(__name__)

DOMAIN = "hwgate.v1"
C = grpc.StatusCode

REASON_CODES: dict[str, grpc.StatusCode] = {
    "PCSC_UNAVAILABLE": C.UNAVAILABLE,
    "READER_NOT_FOUND": C.NOT_FOUND,
    "CARD_NOT_PRESENT": C.FAILED_PRECONDITION,
    "CARD_REMOVED": C.ABORTED,
    "NOT_A_PIV_CARD": C.FAILED_PRECONDITION,
    "CARD_ERROR": C.FAILED_PRECONDITION,
    "CARD_UNRESPONSIVE": C.UNAVAILABLE,
    "SESSION_NOT_FOUND": C.NOT_FOUND,
    "SESSION_NOT_OWNED": C.PERMISSION_DENIED,
    "READER_BUSY": C.DEADLINE_EXCEEDED,
    "PIN_INCORRECT": C.FAILED_PRECONDITION,
    "PIN_BLOCKED": C.FAILED_PRECONDITION,
    "LAST_PIN_ATTEMPT": C.FAILED_PRECONDITION,
    "PIN_REQUIRED": C.FAILED_PRECONDITION,
    "PIN_FORMAT": C.INVALID_ARGUMENT,
    "SLOT_EMPTY": C.FAILED_PRECONDITION,
    "SECURITY_STATUS_NOT_SATISFIED": C.FAILED_PRECONDITION,
    "INVALID_ARGUMENT": C.INVALID_ARGUMENT,
    "APDU_INVALID": C.INVALID_ARGUMENT,
    "INVALID_DIGEST": C.INVALID_ARGUMENT,
    "ALGORITHM_MISMATCH": C.INVALID_ARGUMENT,
    "INVALID_CHALLENGE": C.INVALID_ARGUMENT,
    "KEY_NOT_FOUND": C.NOT_FOUND,
    "KEY_EXISTS": C.ALREADY_EXISTS,
    "MECHANISM_NOT_SUPPORTED": C.FAILED_PRECONDITION,
    "HSM_UNAVAILABLE": C.UNAVAILABLE,
    "HSM_LOGIN_FAILED": C.UNAVAILABLE,
    "HSM_WORKER_LOST": C.UNAVAILABLE,
    "HSM_ERROR": C.FAILED_PRECONDITION,
    "POLICY_DENIED": C.PERMISSION_DENIED,
    "UNAUTHENTICATED_PEER": C.UNAUTHENTICATED,
    "APDU_NOT_PERMITTED": C.PERMISSION_DENIED,
    "RATE_LIMITED": C.RESOURCE_EXHAUSTED,
    "TOO_MANY_SESSIONS": C.RESOURCE_EXHAUSTED,
    "TOO_MANY_APDUS": C.RESOURCE_EXHAUSTED,
    "SUBSCRIBER_TOO_SLOW": C.RESOURCE_EXHAUSTED,
    "SHUTTING_DOWN": C.UNAVAILABLE,
    "INTERNAL_ERROR": C.INTERNAL,
}


def _from_piv(exc: piv_errors.PivError) -> tuple[str, dict[str, str]]:
    """Card status words that reached the edge unhandled by a servicer."""
    if isinstance(exc, piv_errors.InvalidPin):
        left = "" if exc.retries_left is None else str(exc.retries_left)
        return "PIN_INCORRECT", {"retries_left": left}
    if isinstance(exc, piv_errors.PinBlocked):
        return "PIN_BLOCKED", {}
    if isinstance(exc, piv_errors.SecurityStatusNotSatisfied):
        return "SECURITY_STATUS_NOT_SATISFIED", {}
    return "CARD_ERROR", {"sw": f"{exc.sw:04X}"}


def classify(exc: BaseException) -> tuple[grpc.StatusCode, str, str, dict[str, str]]:
    """(code, reason, message, metadata) for *exc*."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason in REASON_CODES:
        metadata = {k: str(v) for k, v in (getattr(exc, "metadata", None) or {}).items()}
        return REASON_CODES[reason], reason, str(exc), metadata
    if isinstance(exc, piv_errors.PivError):
        reason, metadata = _from_piv(exc)
        return REASON_CODES[reason], reason, str(exc), metadata
    if isinstance(exc, piv_errors.PivParseError):
        return C.FAILED_PRECONDITION, "CARD_ERROR", f"malformed card response: {exc}", {}
    log.error("internal error", exc_info=exc)
    return C.INTERNAL, "INTERNAL_ERROR", "internal error (see the daemon log)", {}


def status_for(exc: BaseException) -> grpc.Status:
    code, reason, message, metadata = classify(exc)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    status = status_for(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable")  # context.abort always raises


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
G = TypeVar("G", bound=Callable[..., AsyncIterator[Any]])


def unary(method: F) -> F:
    """Servicer method decorator: domain errors leave as status + ErrorInfo."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await abort(context, exc)

    return wrapper  # type: ignore[return-value]


def stream(method: G) -> G:
    """The same for server-streaming methods (async generators)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await abort(context, exc)

    return wrapper  # type: ignore[return-value]


def timeout_of(context: grpc.aio.ServicerContext[Any, Any], margin: float = 0.05) -> float | None:
    """Time left before the client's deadline, minus a margin to report why we stopped."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return max(0.0, remaining - margin)
