"""Domain errors with a machine-readable reason, raised by the layers below the API.

Each carries an ``ErrorReason`` name (see protos/hwgate/v1/error.proto) and
metadata a program can branch on. The API edge (hwgated.api.errors) turns them
into a gRPC status + google.rpc.ErrorInfo, once. Messages and metadata never
hold a PIN, a secret or key material.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base: ``reason`` is an ErrorReason name; ``metadata`` goes into ErrorInfo."""

    reason = "INTERNAL_ERROR"

    def __init__(self, message: str, **metadata: object) -> None:
        super().__init__(message)
        self.metadata = {k: str(v) for k, v in metadata.items()}


class PcscUnavailable(GatewayError):
    reason = "PCSC_UNAVAILABLE"


class ReaderNotFound(GatewayError):
    reason = "READER_NOT_FOUND"


class CardNotPresent(GatewayError):
    reason = "CARD_NOT_PRESENT"


class CardRemoved(GatewayError):
    reason = "CARD_REMOVED"


class CardUnresponsive(GatewayError):
    reason = "CARD_UNRESPONSIVE"


class NotAPivCard(GatewayError):
    reason = "NOT_A_PIV_CARD"


class CardError(GatewayError):
    reason = "CARD_ERROR"


class SessionNotFound(GatewayError):
    reason = "SESSION_NOT_FOUND"


class SessionNotOwned(GatewayError):
    reason = "SESSION_NOT_OWNED"


class ReaderBusy(GatewayError):
    reason = "READER_BUSY"


class InvalidArgument(GatewayError):
    reason = "INVALID_ARGUMENT"


class ApduInvalid(GatewayError):
    reason = "APDU_INVALID"


class TooManyApdus(GatewayError):
    reason = "TOO_MANY_APDUS"


class TooManySessions(GatewayError):
    reason = "TOO_MANY_SESSIONS"


class SubscriberTooSlow(GatewayError):
    reason = "SUBSCRIBER_TOO_SLOW"


class PinIncorrect(GatewayError):
    reason = "PIN_INCORRECT"


class PinBlocked(GatewayError):
    reason = "PIN_BLOCKED"


class LastPinAttempt(GatewayError):
    reason = "LAST_PIN_ATTEMPT"


class PinRequired(GatewayError):
    reason = "PIN_REQUIRED"


class PinFormat(GatewayError):
    reason = "PIN_FORMAT"


class SlotEmpty(GatewayError):
    reason = "SLOT_EMPTY"


class SecurityStatusNotSatisfied(GatewayError):
    reason = "SECURITY_STATUS_NOT_SATISFIED"


class InvalidDigest(GatewayError):
    reason = "INVALID_DIGEST"


class AlgorithmMismatch(GatewayError):
    reason = "ALGORITHM_MISMATCH"


class InvalidChallenge(GatewayError):
    reason = "INVALID_CHALLENGE"


class PolicyDenied(GatewayError):
    reason = "POLICY_DENIED"


class ApduNotPermitted(GatewayError):
    """A Transmit APDU that touches security status or keys, without the permission."""

    reason = "APDU_NOT_PERMITTED"


class RateLimited(GatewayError):
    reason = "RATE_LIMITED"


class ShuttingDown(GatewayError):
    reason = "SHUTTING_DOWN"
