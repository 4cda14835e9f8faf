"""The one place where errors become gRPC statuses (AIP-193).

Every failure leaves as a canonical status code plus a ``google.rpc.Status``
in the trailers holding one ``google.rpc.ErrorInfo`` (domain "hwgate.v1",
reason = an ErrorReason name, metadata). Daemon errors (``HwgateError``) carry
their reason and fields; PIV status words and parse errors that reach this far
are translated here (the pure protocol package has no reasons of its own).
Anything else is a bug: INTERNAL, logged with its traceback, and no detail
leaks out.
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

from hwgated import errors
from hwgated.edge import refusals
from hwgated.piv import errors as piv_errors

log = logging.getLogger(__name__)

DOMAIN = "hwgate.v1"
C = grpc.StatusCode

# Every ErrorReason and its status code (tests/unit/test_error_reasons.py holds this
# equal to the proto enum and to the daemon's error classes).
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
    "SESSION_EXPIRED": C.NOT_FOUND,
    "READER_BUSY": C.DEADLINE_EXCEEDED,
    "PIN_INCORRECT": C.FAILED_PRECONDITION,
    "PIN_BLOCKED": C.FAILED_PRECONDITION,
    "LAST_PIN_ATTEMPT": C.FAILED_PRECONDITION,
    "PIN_REQUIRED": C.FAILED_PRECONDITION,
    "PIN_FORMAT": C.INVALID_ARGUMENT,
    "SLOT_EMPTY": C.FAILED_PRECONDITION,
    "SECURITY_STATUS_NOT_SATISFIED": C.FAILED_PRECONDITION,
    "PUK_INCORRECT": C.FAILED_PRECONDITION,
    "PUK_BLOCKED": C.FAILED_PRECONDITION,
    "LAST_PUK_ATTEMPT": C.FAILED_PRECONDITION,
    "INVALID_ARGUMENT": C.INVALID_ARGUMENT,
    "APDU_INVALID": C.INVALID_ARGUMENT,
    "INVALID_DIGEST": C.INVALID_ARGUMENT,
    "ALGORITHM_MISMATCH": C.INVALID_ARGUMENT,
    "INVALID_CHALLENGE": C.INVALID_ARGUMENT,
    "TOKEN_AMBIGUOUS": C.INVALID_ARGUMENT,
    "KEY_NOT_FOUND": C.NOT_FOUND,
    "KEY_EXISTS": C.ALREADY_EXISTS,
    "MECHANISM_NOT_SUPPORTED": C.FAILED_PRECONDITION,
    "HSM_UNAVAILABLE": C.UNAVAILABLE,
    "HSM_LOGIN_FAILED": C.UNAVAILABLE,
    "HSM_WORKER_LOST": C.UNAVAILABLE,
    "HSM_ERROR": C.FAILED_PRECONDITION,
    "KEY_USAGE_NOT_ALLOWED": C.FAILED_PRECONDITION,
    "KEY_NOT_ESCROWABLE": C.FAILED_PRECONDITION,
    "WRAPPED_KEY_INVALID": C.INVALID_ARGUMENT,
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


def from_piv(exc: piv_errors.PivError | piv_errors.PivParseError) -> errors.HwgateError:
    """The daemon error for a card status word (or unparsable answer) nobody handled."""
    if isinstance(exc, piv_errors.PivParseError):
        return errors.CardError(f"malformed card response: {exc}")
    if isinstance(exc, piv_errors.InvalidPin):
        left = "" if exc.retries_left is None else str(exc.retries_left)
        return errors.PinIncorrect(str(exc), retries_left=left)
    if isinstance(exc, piv_errors.PinBlocked):
        return errors.PinBlocked(str(exc))
    if isinstance(exc, piv_errors.SecurityStatusNotSatisfied):
        return errors.SecurityStatusNotSatisfied(str(exc))
    return errors.CardError(str(exc), sw=f"{exc.sw:04X}")


def as_hwgate(exc: BaseException) -> errors.HwgateError | None:
    """*exc* as a daemon error, or None when it is none (a bug, or not an error at all)."""
    if isinstance(exc, errors.HwgateError):
        return exc
    if isinstance(exc, piv_errors.PivError | piv_errors.PivParseError):
        return from_piv(exc)
    return None


def classify(exc: BaseException) -> tuple[grpc.StatusCode, str, str, dict[str, str]]:
    """(code, reason, message, metadata) for *exc*."""
    error = as_hwgate(exc)
    if error is None:
        log.error("internal error", exc_info=exc)
        return C.INTERNAL, "INTERNAL_ERROR", "internal error (see the daemon log)", {}
    return REASON_CODES[error.reason], error.reason, str(error), error.metadata


def status_message(exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status of *exc*: code, message and one ErrorInfo with its metadata.
    A failed call carries it in its trailers; a failed SignStream item in its response."""
    code, reason, message, metadata = classify(exc)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])


def status_for(exc: BaseException) -> grpc.Status:
    return rpc_status.to_status(status_message(exc))


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    refusals.audit_refusal(exc)  # every refusal by policy is audited (docs/audit.md)
    status = status_for(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable")  # context.abort always raises


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
G = TypeVar("G", bound=Callable[..., AsyncIterator[Any]])


def unary(method: F) -> F:
    """Servicer method decorator: errors leave as status + ErrorInfo."""

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
