import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from hwgate.v1 import card_pb2 as _card_pb2
from hwgate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Slot(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_UNSPECIFIED: _ClassVar[Slot]
    SLOT_PIV_AUTHENTICATION: _ClassVar[Slot]
    SLOT_DIGITAL_SIGNATURE: _ClassVar[Slot]
    SLOT_KEY_MANAGEMENT: _ClassVar[Slot]
    SLOT_CARD_AUTHENTICATION: _ClassVar[Slot]
SLOT_UNSPECIFIED: Slot
SLOT_PIV_AUTHENTICATION: Slot
SLOT_DIGITAL_SIGNATURE: Slot
SLOT_KEY_MANAGEMENT: Slot
SLOT_CARD_AUTHENTICATION: Slot

class PinPolicy(_message.Message):
    __slots__ = ("application_pin", "global_pin", "occ", "vci", "global_pin_primary", "discovery_present")
    APPLICATION_PIN_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_PIN_FIELD_NUMBER: _ClassVar[int]
    OCC_FIELD_NUMBER: _ClassVar[int]
    VCI_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_PIN_PRIMARY_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    application_pin: bool
    global_pin: bool
    occ: bool
    vci: bool
    global_pin_primary: bool
    discovery_present: bool
    def __init__(self, application_pin: _Optional[bool] = ..., global_pin: _Optional[bool] = ..., occ: _Optional[bool] = ..., vci: _Optional[bool] = ..., global_pin_primary: _Optional[bool] = ..., discovery_present: _Optional[bool] = ...) -> None: ...

class Chuid(_message.Message):
    __slots__ = ("fascn", "guid", "expiration_date", "signed", "raw", "unparsed")
    FASCN_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_DATE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    UNPARSED_FIELD_NUMBER: _ClassVar[int]
    fascn: _card_pb2.Fascn
    guid: str
    expiration_date: _date_pb2.Date
    signed: bool
    raw: bytes
    unparsed: _containers.RepeatedCompositeFieldContainer[ChuidFieldError]
    def __init__(self, fascn: _Optional[_Union[_card_pb2.Fascn, _Mapping]] = ..., guid: _Optional[str] = ..., expiration_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., signed: _Optional[bool] = ..., raw: _Optional[bytes] = ..., unparsed: _Optional[_Iterable[_Union[ChuidFieldError, _Mapping]]] = ...) -> None: ...

class ChuidFieldError(_message.Message):
    __slots__ = ("field", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SlotCertificate(_message.Message):
    __slots__ = ("slot", "der", "summary")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    DER_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    der: bytes
    summary: _common_pb2.CertificateSummary
    def __init__(self, slot: _Optional[_Union[Slot, str]] = ..., der: _Optional[bytes] = ..., summary: _Optional[_Union[_common_pb2.CertificateSummary, _Mapping]] = ...) -> None: ...

class GetCardInfoRequest(_message.Message):
    __slots__ = ("reader", "session_id")
    READER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    reader: str
    session_id: str
    def __init__(self, reader: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class GetCardInfoResponse(_message.Message):
    __slots__ = ("reader", "atr", "chuid", "certificates", "pin_retries_left", "pin_verified", "pin_policy")
    READER_FIELD_NUMBER: _ClassVar[int]
    ATR_FIELD_NUMBER: _ClassVar[int]
    CHUID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    PIN_RETRIES_LEFT_FIELD_NUMBER: _ClassVar[int]
    PIN_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    PIN_POLICY_FIELD_NUMBER: _ClassVar[int]
    reader: str
    atr: bytes
    chuid: Chuid
    certificates: _containers.RepeatedCompositeFieldContainer[SlotCertificate]
    pin_retries_left: int
    pin_verified: bool
    pin_policy: PinPolicy
    def __init__(self, reader: _Optional[str] = ..., atr: _Optional[bytes] = ..., chuid: _Optional[_Union[Chuid, _Mapping]] = ..., certificates: _Optional[_Iterable[_Union[SlotCertificate, _Mapping]]] = ..., pin_retries_left: _Optional[int] = ..., pin_verified: _Optional[bool] = ..., pin_policy: _Optional[_Union[PinPolicy, _Mapping]] = ...) -> None: ...

class VerifyPinRequest(_message.Message):
    __slots__ = ("session_id", "pin", "allow_last_attempt")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_LAST_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pin: bytes
    allow_last_attempt: bool
    def __init__(self, session_id: _Optional[str] = ..., pin: _Optional[bytes] = ..., allow_last_attempt: _Optional[bool] = ...) -> None: ...

class VerifyPinResponse(_message.Message):
    __slots__ = ("session_expire_time",)
    SESSION_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, session_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuthenticateRequest(_message.Message):
    __slots__ = ("session_id", "origin", "challenge")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    origin: str
    challenge: bytes
    def __init__(self, session_id: _Optional[str] = ..., origin: _Optional[str] = ..., challenge: _Optional[bytes] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("signature", "algorithm", "certificate", "digest")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    algorithm: _common_pb2.SignatureAlgorithm
    certificate: bytes
    digest: bytes
    def __init__(self, signature: _Optional[bytes] = ..., algorithm: _Optional[_Union[_common_pb2.SignatureAlgorithm, str]] = ..., certificate: _Optional[bytes] = ..., digest: _Optional[bytes] = ...) -> None: ...

class PivServiceSignRequest(_message.Message):
    __slots__ = ("session_id", "slot", "digest", "algorithm")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    slot: Slot
    digest: bytes
    algorithm: _common_pb2.SignatureAlgorithm
    def __init__(self, session_id: _Optional[str] = ..., slot: _Optional[_Union[Slot, str]] = ..., digest: _Optional[bytes] = ..., algorithm: _Optional[_Union[_common_pb2.SignatureAlgorithm, str]] = ...) -> None: ...

class PivServiceSignResponse(_message.Message):
    __slots__ = ("signature", "certificate")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    certificate: bytes
    def __init__(self, signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ...) -> None: ...

class ChangePinRequest(_message.Message):
    __slots__ = ("session_id", "old_pin", "new_pin", "allow_last_attempt")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_PIN_FIELD_NUMBER: _ClassVar[int]
    NEW_PIN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_LAST_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    old_pin: bytes
    new_pin: bytes
    allow_last_attempt: bool
    def __init__(self, session_id: _Optional[str] = ..., old_pin: _Optional[bytes] = ..., new_pin: _Optional[bytes] = ..., allow_last_attempt: _Optional[bool] = ...) -> None: ...

class ChangePinResponse(_message.Message):
    __slots__ = ("session_expire_time",)
    SESSION_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, session_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UnblockPinRequest(_message.Message):
    __slots__ = ("session_id", "puk", "new_pin", "allow_last_puk_attempt")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PUK_FIELD_NUMBER: _ClassVar[int]
    NEW_PIN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_LAST_PUK_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    puk: bytes
    new_pin: bytes
    allow_last_puk_attempt: bool
    def __init__(self, session_id: _Optional[str] = ..., puk: _Optional[bytes] = ..., new_pin: _Optional[bytes] = ..., allow_last_puk_attempt: _Optional[bool] = ...) -> None: ...

class UnblockPinResponse(_message.Message):
    __slots__ = ("session_expire_time",)
    SESSION_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, session_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
