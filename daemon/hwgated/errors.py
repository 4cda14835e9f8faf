"""The daemon's one error hierarchy: one class per ``ErrorReason``, raised by every layer.

Each subclass names its ``ErrorReason`` (see protos/hwgate/v1/error.proto) as
a class attribute and takes its metadata as typed keyword fields in the
constructor, so nothing is attached after the fact. The edge
(hwgated.edge.status) turns them into a gRPC status + google.rpc.ErrorInfo,
once, by ``isinstance``. The HSM worker pipe carries them as data
(reason, message, fields) and the parent rebuilds the class with
:func:`error_class`. Messages and fields never hold a PIN, a secret or key
material.

The pure PIV protocol package (hwgated.piv) keeps its own status-word and
parse errors; the edge translates those.
"""

from __future__ import annotations

from typing import ClassVar

FieldValue = str | int

_BY_REASON: dict[str, type[HwgateError]] = {}


class HwgateError(Exception):
    """Base: ``reason`` is an ErrorReason name; ``fields`` become ErrorInfo metadata.

    The base itself stands for INTERNAL_ERROR. A subclass that sets ``reason``
    in its own body registers itself as *the* class for that reason (a second
    one is a bug, refused at import); a subclass that only inherits it (e.g. a
    refinement kept for auditing) shares its parent's reason.
    """

    reason: ClassVar[str] = "INTERNAL_ERROR"
    # What the audit log records when it is truer than ``reason`` (which the client sees).
    audit_outcome: ClassVar[str | None] = None

    def __init__(self, message: str = "", **fields: FieldValue) -> None:
        self.message = message or self.reason
        super().__init__(self.message)
        self.fields: dict[str, FieldValue] = dict(fields)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "reason" in cls.__dict__:
            _register(cls)

    @property
    def metadata(self) -> dict[str, str]:
        """The ErrorInfo metadata: every field, as text."""
        return {k: str(v) for k, v in self.fields.items()}


def _register(cls: type[HwgateError]) -> None:
    known = _BY_REASON.get(cls.reason)
    if known is not None and known is not cls:
        raise TypeError(f"{cls.__name__}: reason {cls.reason} is already {known.__name__}'s")
    _BY_REASON[cls.reason] = cls


_register(HwgateError)

GatewayError = HwgateError  # the former name of the base, kept for callers not yet renamed


def error_class(reason: str) -> type[HwgateError] | None:
    """The class that stands for *reason*, or None for a name the daemon does not know."""
    return _BY_REASON.get(reason)


def reasons() -> frozenset[str]:
    """Every reason the daemon has a class for."""
    return frozenset(_BY_REASON)


# --- readers and cards --------------------------------------------------------


class PcscUnavailable(HwgateError):
    reason = "PCSC_UNAVAILABLE"


class ReaderNotFound(HwgateError):
    reason = "READER_NOT_FOUND"


class CardNotPresent(HwgateError):
    reason = "CARD_NOT_PRESENT"


class CardRemoved(HwgateError):
    reason = "CARD_REMOVED"


class CardUnresponsive(HwgateError):
    reason = "CARD_UNRESPONSIVE"


class NotAPivCard(HwgateError):
    reason = "NOT_A_PIV_CARD"


class CardError(HwgateError):
    reason = "CARD_ERROR"


# --- sessions ----------------------------------------------------------------


class SessionNotFound(HwgateError):
    reason = "SESSION_NOT_FOUND"


class SessionNotOwned(HwgateError):
    reason = "SESSION_NOT_OWNED"


class SessionExpired(HwgateError):
    """The caller's own session ended because its idle TTL ran out."""

    reason = "SESSION_EXPIRED"


class ReaderBusy(HwgateError):
    reason = "READER_BUSY"


# --- PIN and card security status ------------------------------------------------


class PinIncorrect(HwgateError):
    reason = "PIN_INCORRECT"


class PinBlocked(HwgateError):
    reason = "PIN_BLOCKED"


class LastPinAttempt(HwgateError):
    reason = "LAST_PIN_ATTEMPT"


class PinRequired(HwgateError):
    reason = "PIN_REQUIRED"


class PinFormat(HwgateError):
    reason = "PIN_FORMAT"


class SlotEmpty(HwgateError):
    reason = "SLOT_EMPTY"


class SecurityStatusNotSatisfied(HwgateError):
    reason = "SECURITY_STATUS_NOT_SATISFIED"


class PukIncorrect(HwgateError):
    """Wrong PUK (UnblockPin); ``retries_left`` as the card reported it."""

    reason = "PUK_INCORRECT"


class PukBlocked(HwgateError):
    """The PUK's retry counter is 0: the PIN can no longer be unblocked."""

    reason = "PUK_BLOCKED"


class LastPukAttempt(HwgateError):
    """The card last reported one PUK retry and the caller did not allow spending it."""

    reason = "LAST_PUK_ATTEMPT"


# --- malformed requests ---------------------------------------------------------


class InvalidArgument(HwgateError):
    """The request itself is malformed (bad reference, bad length, unknown option)."""

    reason = "INVALID_ARGUMENT"


class ApduInvalid(HwgateError):
    reason = "APDU_INVALID"


class InvalidDigest(InvalidArgument):
    """The digest length does not match the algorithm's hash."""

    reason = "INVALID_DIGEST"


class AlgorithmMismatch(InvalidArgument):
    """The key's type cannot perform the requested algorithm (e.g. ECDSA with an RSA key)."""

    reason = "ALGORITHM_MISMATCH"


class InvalidChallenge(HwgateError):
    reason = "INVALID_CHALLENGE"


class TokenAmbiguous(HwgateError):
    """No token named while several are configured: the daemon never picks one."""

    reason = "TOKEN_AMBIGUOUS"


# --- HSM -------------------------------------------------------------------------


class HsmError(HwgateError):
    """A PKCS#11 failure without a more specific reason (also: a worker's unknown reason)."""

    reason = "HSM_ERROR"


class KeyNotFound(HwgateError):
    """No object on the token matches the key reference."""

    reason = "KEY_NOT_FOUND"


class KeyExists(HwgateError):
    """An object with this label already exists; the HSM layer never overwrites."""

    reason = "KEY_EXISTS"


class MechanismNotSupported(HwgateError):
    """The token (or this layer) does not offer the requested mechanism."""

    reason = "MECHANISM_NOT_SUPPORTED"


class HsmUnavailable(HwgateError):
    """The module, token or worker cannot serve now (load failure, token gone, pool down)."""

    reason = "HSM_UNAVAILABLE"


class HsmLoginFailed(HsmUnavailable):
    """The token refused the user PIN (or the PIN could not be read); the pool stays down."""

    reason = "HSM_LOGIN_FAILED"


class HsmWorkerLost(HwgateError):
    """The worker running this request died or hung and was replaced; retrying may succeed."""

    reason = "HSM_WORKER_LOST"


class KeyUsageNotAllowed(HwgateError):
    """The key lacks the usage flag (CKA_SIGN, CKA_DERIVE, ...) the operation needs."""

    reason = "KEY_USAGE_NOT_ALLOWED"


class KeyNotEscrowable(HwgateError):
    """The key is not marked for escrow (no wrap rule names it, or it is not extractable)."""

    reason = "KEY_NOT_ESCROWABLE"


class WrappedKeyInvalid(InvalidArgument):
    """A wrapped key that does not unwrap under the named key, or is not of the stated type."""

    reason = "WRAPPED_KEY_INVALID"


# --- access control and limits ---------------------------------------------------


class PolicyDenied(HwgateError):
    reason = "POLICY_DENIED"


class UnauthenticatedPeer(HwgateError):
    reason = "UNAUTHENTICATED_PEER"


class RateLimited(HwgateError):
    reason = "RATE_LIMITED"


class TooManySessions(HwgateError):
    reason = "TOO_MANY_SESSIONS"


class TooManyApdus(HwgateError):
    reason = "TOO_MANY_APDUS"


class SubscriberTooSlow(HwgateError):
    reason = "SUBSCRIBER_TOO_SLOW"


class ApduNotPermitted(HwgateError):
    """A Transmit APDU that touches security status or keys, without the permission."""

    reason = "APDU_NOT_PERMITTED"


# --- the daemon itself -------------------------------------------------------------


class ShuttingDown(HwgateError):
    reason = "SHUTTING_DOWN"


InternalError = HwgateError  # INTERNAL_ERROR's class is the base itself
