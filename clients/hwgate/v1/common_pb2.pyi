import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignatureAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNATURE_ALGORITHM_UNSPECIFIED: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_ECDSA_SHA256: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_ECDSA_SHA384: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PKCS1_SHA384: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PKCS1_SHA512: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PSS_SHA256: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PSS_SHA384: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_RSA_PSS_SHA512: _ClassVar[SignatureAlgorithm]
    SIGNATURE_ALGORITHM_HMAC_SHA256: _ClassVar[SignatureAlgorithm]

class KeyAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_ALGORITHM_UNSPECIFIED: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_RSA_1024: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_RSA_2048: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_RSA_3072: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_RSA_4096: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_EC_P256: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_EC_P384: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_AES_128: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_AES_256: _ClassVar[KeyAlgorithm]
    KEY_ALGORITHM_GENERIC_SECRET: _ClassVar[KeyAlgorithm]
SIGNATURE_ALGORITHM_UNSPECIFIED: SignatureAlgorithm
SIGNATURE_ALGORITHM_ECDSA_SHA256: SignatureAlgorithm
SIGNATURE_ALGORITHM_ECDSA_SHA384: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PKCS1_SHA384: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PKCS1_SHA512: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PSS_SHA256: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PSS_SHA384: SignatureAlgorithm
SIGNATURE_ALGORITHM_RSA_PSS_SHA512: SignatureAlgorithm
SIGNATURE_ALGORITHM_HMAC_SHA256: SignatureAlgorithm
KEY_ALGORITHM_UNSPECIFIED: KeyAlgorithm
KEY_ALGORITHM_RSA_1024: KeyAlgorithm
KEY_ALGORITHM_RSA_2048: KeyAlgorithm
KEY_ALGORITHM_RSA_3072: KeyAlgorithm
KEY_ALGORITHM_RSA_4096: KeyAlgorithm
KEY_ALGORITHM_EC_P256: KeyAlgorithm
KEY_ALGORITHM_EC_P384: KeyAlgorithm
KEY_ALGORITHM_AES_128: KeyAlgorithm
KEY_ALGORITHM_AES_256: KeyAlgorithm
KEY_ALGORITHM_GENERIC_SECRET: KeyAlgorithm

class CertificateSummary(_message.Message):
    __slots__ = ("subject", "issuer", "serial_number", "not_before_time", "not_after_time", "key_algorithm", "sha256_fingerprint")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SHA256_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    issuer: str
    serial_number: bytes
    not_before_time: _timestamp_pb2.Timestamp
    not_after_time: _timestamp_pb2.Timestamp
    key_algorithm: KeyAlgorithm
    sha256_fingerprint: bytes
    def __init__(self, subject: _Optional[str] = ..., issuer: _Optional[str] = ..., serial_number: _Optional[bytes] = ..., not_before_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_algorithm: _Optional[_Union[KeyAlgorithm, str]] = ..., sha256_fingerprint: _Optional[bytes] = ...) -> None: ...
