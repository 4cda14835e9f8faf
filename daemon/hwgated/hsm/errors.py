"""One exception hierarchy for the HSM layer, each with a stable machine-readable ``reason``.

The gRPC edge maps these to status codes once (``reason`` becomes the
``google.rpc.ErrorInfo`` reason). Workers report failures as ``(reason, message)``
pairs over their pipe and the pool rebuilds the same class here with
:func:`error_from_wire`, so callers never see python-pkcs11 exceptions. What
crosses the pipe is data (reason, message, fields), never a pickled exception:
the parent must not run anything a worker sends.

Messages never contain a PIN, a secret or key material: they are built from
labels, mechanism names and PKCS#11 return-code names only.
"""

from __future__ import annotations


class HsmError(Exception):
    """Base of every HSM-layer error; ``reason`` is stable, the message is for humans."""

    reason = "HSM_ERROR"

    def __init__(self, message: str = "", **fields: str | int) -> None:
        super().__init__(message or self.reason)
        self.message = message or self.reason
        self.fields: dict[str, str | int] = dict(fields)


class KeyNotFound(HsmError):
    """No object on the token matches the key reference."""

    reason = "KEY_NOT_FOUND"


class MechanismNotSupported(HsmError):
    """The token (or this layer) does not offer the requested mechanism."""

    reason = "MECHANISM_NOT_SUPPORTED"


class HsmUnavailable(HsmError):
    """The module, token or worker cannot serve now (load failure, token gone, pool down)."""

    reason = "HSM_UNAVAILABLE"


class HsmLoginFailed(HsmUnavailable):
    """The token refused the user PIN (or the PIN could not be read); the pool stays down."""

    reason = "HSM_LOGIN_FAILED"


class HsmWorkerLost(HsmError):
    """The worker running this request died or hung and was replaced; retrying may succeed."""

    reason = "HSM_WORKER_LOST"


class InvalidArgument(HsmError):
    """The request itself is malformed (bad reference, bad length, unknown option)."""

    reason = "INVALID_ARGUMENT"


class InvalidDigest(InvalidArgument):
    """The digest length does not match the algorithm's hash."""

    reason = "INVALID_DIGEST"


class AlgorithmMismatch(InvalidArgument):
    """The key's type cannot perform the requested algorithm (e.g. ECDSA with an RSA key)."""

    reason = "ALGORITHM_MISMATCH"


class KeyExists(HsmError):
    """An object with this label already exists; the HSM layer never overwrites."""

    reason = "KEY_EXISTS"


_BY_REASON: dict[str, type[HsmError]] = {
    cls.reason: cls
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
    )
}


def error_from_reason(reason: str, message: str, **fields: str | int) -> HsmError:
    """Rebuild the exception a worker reported; an unknown reason becomes a plain HsmError."""
    return _BY_REASON.get(reason, HsmError)(message, **fields)


_MAX_MESSAGE = 1000  # characters of a worker's message kept


def error_to_wire(error: HsmError) -> dict[str, object]:
    """The typed data a worker sends for *error*."""
    return {"reason": error.reason, "message": error.message, "fields": dict(error.fields)}


def error_from_wire(payload: object) -> HsmError:
    """The HsmError a worker's error payload describes; a malformed payload raises
    ValueError (the caller treats the worker as broken)."""
    if not isinstance(payload, dict) or set(payload) != {"reason", "message", "fields"}:
        raise ValueError("malformed error payload")
    reason, message, fields = payload["reason"], payload["message"], payload["fields"]
    if not isinstance(reason, str) or not isinstance(message, str) or not isinstance(fields, dict):
        raise ValueError("malformed error payload")
    if not all(type(v) in (str, int) for v in fields.values()):
        raise ValueError("malformed error fields")
    return error_from_reason(reason, message[:_MAX_MESSAGE], **fields)
