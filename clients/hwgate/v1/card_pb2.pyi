import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from hwgate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReaderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READER_STATE_UNSPECIFIED: _ClassVar[ReaderState]
    READER_STATE_EMPTY: _ClassVar[ReaderState]
    READER_STATE_PRESENT: _ClassVar[ReaderState]
    READER_STATE_MUTE: _ClassVar[ReaderState]
    READER_STATE_UNAVAILABLE: _ClassVar[ReaderState]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_READER_STATE: _ClassVar[EventType]
    EVENT_TYPE_SNAPSHOT_COMPLETE: _ClassVar[EventType]
    EVENT_TYPE_READER_ADDED: _ClassVar[EventType]
    EVENT_TYPE_READER_REMOVED: _ClassVar[EventType]
    EVENT_TYPE_CARD_INSERTED: _ClassVar[EventType]
    EVENT_TYPE_CARD_REMOVED: _ClassVar[EventType]
    EVENT_TYPE_SERVICE_DOWN: _ClassVar[EventType]
    EVENT_TYPE_SERVICE_UP: _ClassVar[EventType]
READER_STATE_UNSPECIFIED: ReaderState
READER_STATE_EMPTY: ReaderState
READER_STATE_PRESENT: ReaderState
READER_STATE_MUTE: ReaderState
READER_STATE_UNAVAILABLE: ReaderState
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_READER_STATE: EventType
EVENT_TYPE_SNAPSHOT_COMPLETE: EventType
EVENT_TYPE_READER_ADDED: EventType
EVENT_TYPE_READER_REMOVED: EventType
EVENT_TYPE_CARD_INSERTED: EventType
EVENT_TYPE_CARD_REMOVED: EventType
EVENT_TYPE_SERVICE_DOWN: EventType
EVENT_TYPE_SERVICE_UP: EventType

class Fascn(_message.Message):
    __slots__ = ("agency_code", "system_code", "credential_number", "credential_series", "individual_credential_issue", "person_identifier", "organizational_category", "organizational_identifier", "person_association", "raw")
    AGENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_CODE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_SERIES_FIELD_NUMBER: _ClassVar[int]
    INDIVIDUAL_CREDENTIAL_ISSUE_FIELD_NUMBER: _ClassVar[int]
    PERSON_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATIONAL_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATIONAL_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    PERSON_ASSOCIATION_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    agency_code: str
    system_code: str
    credential_number: str
    credential_series: str
    individual_credential_issue: str
    person_identifier: str
    organizational_category: str
    organizational_identifier: str
    person_association: str
    raw: bytes
    def __init__(self, agency_code: _Optional[str] = ..., system_code: _Optional[str] = ..., credential_number: _Optional[str] = ..., credential_series: _Optional[str] = ..., individual_credential_issue: _Optional[str] = ..., person_identifier: _Optional[str] = ..., organizational_category: _Optional[str] = ..., organizational_identifier: _Optional[str] = ..., person_association: _Optional[str] = ..., raw: _Optional[bytes] = ...) -> None: ...

class CardIdentity(_message.Message):
    __slots__ = ("is_piv", "fascn", "guid", "expiration_date", "piv_auth_certificate")
    IS_PIV_FIELD_NUMBER: _ClassVar[int]
    FASCN_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_DATE_FIELD_NUMBER: _ClassVar[int]
    PIV_AUTH_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    is_piv: bool
    fascn: Fascn
    guid: str
    expiration_date: _date_pb2.Date
    piv_auth_certificate: _common_pb2.CertificateSummary
    def __init__(self, is_piv: _Optional[bool] = ..., fascn: _Optional[_Union[Fascn, _Mapping]] = ..., guid: _Optional[str] = ..., expiration_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., piv_auth_certificate: _Optional[_Union[_common_pb2.CertificateSummary, _Mapping]] = ...) -> None: ...

class Reader(_message.Message):
    __slots__ = ("name", "state", "atr", "card", "session_held")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATR_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    SESSION_HELD_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: ReaderState
    atr: bytes
    card: CardIdentity
    session_held: bool
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[ReaderState, str]] = ..., atr: _Optional[bytes] = ..., card: _Optional[_Union[CardIdentity, _Mapping]] = ..., session_held: _Optional[bool] = ...) -> None: ...

class ListReadersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReadersResponse(_message.Message):
    __slots__ = ("readers",)
    READERS_FIELD_NUMBER: _ClassVar[int]
    readers: _containers.RepeatedCompositeFieldContainer[Reader]
    def __init__(self, readers: _Optional[_Iterable[_Union[Reader, _Mapping]]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_sequence", "reader_patterns", "event_types")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    READER_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    reader_patterns: _containers.RepeatedScalarFieldContainer[str]
    event_types: _containers.RepeatedScalarFieldContainer[EventType]
    def __init__(self, after_sequence: _Optional[int] = ..., reader_patterns: _Optional[_Iterable[str]] = ..., event_types: _Optional[_Iterable[_Union[EventType, str]]] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("sequence", "event_time", "type", "reader", "state", "atr", "card", "snapshot", "resync")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    READER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATR_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    event_time: _timestamp_pb2.Timestamp
    type: EventType
    reader: str
    state: ReaderState
    atr: bytes
    card: CardIdentity
    snapshot: bool
    resync: bool
    def __init__(self, sequence: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[_Union[EventType, str]] = ..., reader: _Optional[str] = ..., state: _Optional[_Union[ReaderState, str]] = ..., atr: _Optional[bytes] = ..., card: _Optional[_Union[CardIdentity, _Mapping]] = ..., snapshot: _Optional[bool] = ..., resync: _Optional[bool] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("reader", "ttl")
    READER_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    reader: str
    ttl: _duration_pb2.Duration
    def __init__(self, reader: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session_id", "ttl", "expire_time")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ttl: _duration_pb2.Duration
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransmitRequest(_message.Message):
    __slots__ = ("reader", "session_id", "apdus", "auto_response")
    READER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    APDUS_FIELD_NUMBER: _ClassVar[int]
    AUTO_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    reader: str
    session_id: str
    apdus: _containers.RepeatedScalarFieldContainer[bytes]
    auto_response: bool
    def __init__(self, reader: _Optional[str] = ..., session_id: _Optional[str] = ..., apdus: _Optional[_Iterable[bytes]] = ..., auto_response: _Optional[bool] = ...) -> None: ...

class ResponseApdu(_message.Message):
    __slots__ = ("data", "status_word")
    DATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_WORD_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    status_word: int
    def __init__(self, data: _Optional[bytes] = ..., status_word: _Optional[int] = ...) -> None: ...

class TransmitResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[ResponseApdu]
    def __init__(self, responses: _Optional[_Iterable[_Union[ResponseApdu, _Mapping]]] = ...) -> None: ...
