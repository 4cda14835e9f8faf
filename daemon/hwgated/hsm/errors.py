"""The HSM layer's errors: the daemon's own classes (hwgated.errors), and their wire form.

There is one class per reason in the whole daemon; this module names the ones
the HSM layer raises and turns them into data for the worker pipe. Workers
report failures as ``{reason, message, fields}`` and the pool rebuilds the same
class with :func:`error_from_wire`, so callers never see python-pkcs11
exceptions. What crosses the pipe is data, never a pickled exception: the
parent must not run anything a worker sends. Only the reasons below may come
from a worker; any other name (a worker cannot speak for the policy, the card
or the daemon) becomes a plain ``HsmError``.

Messages never contain a PIN, a secret or key material: they are built from
labels, mechanism names and PKCS#11 return-code names only.
"""

from __future__ import annotations

from hwgated.errors import (
    AlgorithmMismatch,
    FieldValue,
    HsmError,
    HsmLoginFailed,
    HsmUnavailable,
    HsmWorkerLost,
    HwgateError,
    InvalidArgument,
    InvalidDigest,
    KeyExists,
    KeyNotEscrowable,
    KeyNotFound,
    KeyUsageNotAllowed,
    MechanismNotSupported,
    WrappedKeyInvalid,
    error_class,
)

__all__ = [
    "WORKER_REASONS",
    "AlgorithmMismatch",
    "HsmError",
    "HsmLoginFailed",
    "HsmUnavailable",
    "HsmWorkerLost",
    "HwgateError",
    "InvalidArgument",
    "InvalidDigest",
    "KeyExists",
    "KeyNotEscrowable",
    "KeyNotFound",
    "KeyUsageNotAllowed",
    "MechanismNotSupported",
    "WrappedKeyInvalid",
    "error_from_reason",
    "error_from_wire",
    "error_to_wire",
]

WORKER_REASONS: frozenset[str] = frozenset(
    cls.reason
    for cls in (
        HsmError,
        KeyNotFound,
        MechanismNotSupported,
        HsmUnavailable,
        HsmLoginFailed,
        HsmWorkerLost,
        InvalidArgument,
        InvalidDigest,
        AlgorithmMismatch,
        KeyExists,
        KeyUsageNotAllowed,
        KeyNotEscrowable,
        WrappedKeyInvalid,
    )
)


def error_from_reason(reason: str, message: str, **fields: FieldValue) -> HwgateError:
    """Rebuild the exception a worker reported; a reason a worker may not give becomes a
    plain HsmError."""
    cls = error_class(reason) if reason in WORKER_REASONS else None
    return (cls or HsmError)(message, **fields)


_MAX_MESSAGE = 1000  # characters of a worker's message kept


def error_to_wire(error: HwgateError) -> dict[str, object]:
    """The typed data a worker sends for *error*."""
    return {"reason": error.reason, "message": error.message, "fields": dict(error.fields)}


def error_from_wire(payload: object) -> HwgateError:
    """The error a worker's error payload describes; a malformed payload raises
    ValueError (the caller treats the worker as broken)."""
    if not isinstance(payload, dict) or set(payload) != {"reason", "message", "fields"}:
        raise ValueError("malformed error payload")
    reason, message, fields = payload["reason"], payload["message"], payload["fields"]
    if not isinstance(reason, str) or not isinstance(message, str) or not isinstance(fields, dict):
        raise ValueError("malformed error payload")
    if not all(isinstance(k, str) for k in fields) or not all(
        type(v) in (str, int) for v in fields.values()
    ):
        raise ValueError("malformed error fields")
    return error_from_reason(reason, message[:_MAX_MESSAGE], **fields)
