"""One exception hierarchy for the HSM layer, each with a stable machine-readable ``reason``.

The gRPC edge maps these to status codes once (``reason`` becomes the
``google.rpc.ErrorInfo`` reason). Workers report failures as ``(reason, message)``
pairs over their pipe and the pool rebuilds the same class here with
:func:`error_from_reason`, so callers never see python-pkcs11 exceptions.

Messages never contain a PIN, a secret or key material: they are built from
labels, mechanism names and PKCS#11 return-code names only.
"""

from __future__ import annotations


class HsmError(Exception):
    """Base of every HSM-layer error; ``reason`` is stable, the message is for humans."""

    reason = "HSM_ERROR"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.reason)
        self.message = message or self.reason


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


def error_from_reason(reason: str, message: str) -> HsmError:
    """Rebuild the exception a worker reported; an unknown reason becomes a plain HsmError."""
    return _BY_REASON.get(reason, HsmError)(message)
