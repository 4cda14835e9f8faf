from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    PCSC_UNAVAILABLE: _ClassVar[ErrorReason]
    READER_NOT_FOUND: _ClassVar[ErrorReason]
    CARD_NOT_PRESENT: _ClassVar[ErrorReason]
    CARD_REMOVED: _ClassVar[ErrorReason]
    NOT_A_PIV_CARD: _ClassVar[ErrorReason]
    CARD_ERROR: _ClassVar[ErrorReason]
    CARD_UNRESPONSIVE: _ClassVar[ErrorReason]
    SESSION_NOT_FOUND: _ClassVar[ErrorReason]
    SESSION_NOT_OWNED: _ClassVar[ErrorReason]
    READER_BUSY: _ClassVar[ErrorReason]
    PIN_INCORRECT: _ClassVar[ErrorReason]
    PIN_BLOCKED: _ClassVar[ErrorReason]
    LAST_PIN_ATTEMPT: _ClassVar[ErrorReason]
    PIN_REQUIRED: _ClassVar[ErrorReason]
    PIN_FORMAT: _ClassVar[ErrorReason]
    SLOT_EMPTY: _ClassVar[ErrorReason]
    SECURITY_STATUS_NOT_SATISFIED: _ClassVar[ErrorReason]
    INVALID_ARGUMENT: _ClassVar[ErrorReason]
    APDU_INVALID: _ClassVar[ErrorReason]
    INVALID_DIGEST: _ClassVar[ErrorReason]
    ALGORITHM_MISMATCH: _ClassVar[ErrorReason]
    INVALID_CHALLENGE: _ClassVar[ErrorReason]
    KEY_NOT_FOUND: _ClassVar[ErrorReason]
    KEY_EXISTS: _ClassVar[ErrorReason]
    MECHANISM_NOT_SUPPORTED: _ClassVar[ErrorReason]
    HSM_UNAVAILABLE: _ClassVar[ErrorReason]
    HSM_LOGIN_FAILED: _ClassVar[ErrorReason]
    HSM_WORKER_LOST: _ClassVar[ErrorReason]
    HSM_ERROR: _ClassVar[ErrorReason]
    POLICY_DENIED: _ClassVar[ErrorReason]
    UNAUTHENTICATED_PEER: _ClassVar[ErrorReason]
    RATE_LIMITED: _ClassVar[ErrorReason]
    TOO_MANY_SESSIONS: _ClassVar[ErrorReason]
    TOO_MANY_APDUS: _ClassVar[ErrorReason]
    SUBSCRIBER_TOO_SLOW: _ClassVar[ErrorReason]
    APDU_NOT_PERMITTED: _ClassVar[ErrorReason]
    SHUTTING_DOWN: _ClassVar[ErrorReason]
    INTERNAL_ERROR: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
PCSC_UNAVAILABLE: ErrorReason
READER_NOT_FOUND: ErrorReason
CARD_NOT_PRESENT: ErrorReason
CARD_REMOVED: ErrorReason
NOT_A_PIV_CARD: ErrorReason
CARD_ERROR: ErrorReason
CARD_UNRESPONSIVE: ErrorReason
SESSION_NOT_FOUND: ErrorReason
SESSION_NOT_OWNED: ErrorReason
READER_BUSY: ErrorReason
PIN_INCORRECT: ErrorReason
PIN_BLOCKED: ErrorReason
LAST_PIN_ATTEMPT: ErrorReason
PIN_REQUIRED: ErrorReason
PIN_FORMAT: ErrorReason
SLOT_EMPTY: ErrorReason
SECURITY_STATUS_NOT_SATISFIED: ErrorReason
INVALID_ARGUMENT: ErrorReason
APDU_INVALID: ErrorReason
INVALID_DIGEST: ErrorReason
ALGORITHM_MISMATCH: ErrorReason
INVALID_CHALLENGE: ErrorReason
KEY_NOT_FOUND: ErrorReason
KEY_EXISTS: ErrorReason
MECHANISM_NOT_SUPPORTED: ErrorReason
HSM_UNAVAILABLE: ErrorReason
HSM_LOGIN_FAILED: ErrorReason
HSM_WORKER_LOST: ErrorReason
HSM_ERROR: ErrorReason
POLICY_DENIED: ErrorReason
UNAUTHENTICATED_PEER: ErrorReason
RATE_LIMITED: ErrorReason
TOO_MANY_SESSIONS: ErrorReason
TOO_MANY_APDUS: ErrorReason
SUBSCRIBER_TOO_SLOW: ErrorReason
APDU_NOT_PERMITTED: ErrorReason
SHUTTING_DOWN: ErrorReason
INTERNAL_ERROR: ErrorReason

class StreamError(_message.Message):
    __slots__ = ("code", "reason", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: ErrorReason
    message: str
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[_Union[ErrorReason, str]] = ..., message: _Optional[str] = ...) -> None: ...
