from google.rpc import status_pb2 as _status_pb2
from hwgate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_CLASS_UNSPECIFIED: _ClassVar[KeyClass]
    KEY_CLASS_KEY_PAIR: _ClassVar[KeyClass]
    KEY_CLASS_SECRET_KEY: _ClassVar[KeyClass]
    KEY_CLASS_PUBLIC_KEY: _ClassVar[KeyClass]

class KeyUsage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_USAGE_UNSPECIFIED: _ClassVar[KeyUsage]
    KEY_USAGE_SIGN: _ClassVar[KeyUsage]
    KEY_USAGE_VERIFY: _ClassVar[KeyUsage]
    KEY_USAGE_DERIVE: _ClassVar[KeyUsage]
    KEY_USAGE_ENCRYPT: _ClassVar[KeyUsage]
    KEY_USAGE_DECRYPT: _ClassVar[KeyUsage]
    KEY_USAGE_WRAP: _ClassVar[KeyUsage]
    KEY_USAGE_UNWRAP: _ClassVar[KeyUsage]

class WrapMechanism(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRAP_MECHANISM_UNSPECIFIED: _ClassVar[WrapMechanism]
    WRAP_MECHANISM_AES_KEY_WRAP_PAD: _ClassVar[WrapMechanism]

class TransportKdf(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSPORT_KDF_UNSPECIFIED: _ClassVar[TransportKdf]
    TRANSPORT_KDF_ECDH_NULL_AES_ECB_SHA256: _ClassVar[TransportKdf]
KEY_CLASS_UNSPECIFIED: KeyClass
KEY_CLASS_KEY_PAIR: KeyClass
KEY_CLASS_SECRET_KEY: KeyClass
KEY_CLASS_PUBLIC_KEY: KeyClass
KEY_USAGE_UNSPECIFIED: KeyUsage
KEY_USAGE_SIGN: KeyUsage
KEY_USAGE_VERIFY: KeyUsage
KEY_USAGE_DERIVE: KeyUsage
KEY_USAGE_ENCRYPT: KeyUsage
KEY_USAGE_DECRYPT: KeyUsage
KEY_USAGE_WRAP: KeyUsage
KEY_USAGE_UNWRAP: KeyUsage
WRAP_MECHANISM_UNSPECIFIED: WrapMechanism
WRAP_MECHANISM_AES_KEY_WRAP_PAD: WrapMechanism
TRANSPORT_KDF_UNSPECIFIED: TransportKdf
TRANSPORT_KDF_ECDH_NULL_AES_ECB_SHA256: TransportKdf

class KeyRef(_message.Message):
    __slots__ = ("token", "label", "id", "uri")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    token: str
    label: str
    id: bytes
    uri: str
    def __init__(self, token: _Optional[str] = ..., label: _Optional[str] = ..., id: _Optional[bytes] = ..., uri: _Optional[str] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("token", "label", "id", "uri", "key_class", "algorithm", "size_bits", "usages", "sensitive", "extractable", "local", "persistent")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    KEY_CLASS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    USAGES_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    EXTRACTABLE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_FIELD_NUMBER: _ClassVar[int]
    token: str
    label: str
    id: bytes
    uri: str
    key_class: KeyClass
    algorithm: _common_pb2.KeyAlgorithm
    size_bits: int
    usages: _containers.RepeatedScalarFieldContainer[KeyUsage]
    sensitive: bool
    extractable: bool
    local: bool
    persistent: bool
    def __init__(self, token: _Optional[str] = ..., label: _Optional[str] = ..., id: _Optional[bytes] = ..., uri: _Optional[str] = ..., key_class: _Optional[_Union[KeyClass, str]] = ..., algorithm: _Optional[_Union[_common_pb2.KeyAlgorithm, str]] = ..., size_bits: _Optional[int] = ..., usages: _Optional[_Iterable[_Union[KeyUsage, str]]] = ..., sensitive: _Optional[bool] = ..., extractable: _Optional[bool] = ..., local: _Optional[bool] = ..., persistent: _Optional[bool] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("token", "label_pattern", "page_size", "page_token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_PATTERN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    label_pattern: str
    page_size: int
    page_token: str
    def __init__(self, token: _Optional[str] = ..., label_pattern: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys", "next_page_token")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    next_page_token: str
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ...) -> None: ...

class GetPublicKeyResponse(_message.Message):
    __slots__ = ("der", "pem", "algorithm", "key")
    DER_FIELD_NUMBER: _ClassVar[int]
    PEM_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    der: bytes
    pem: str
    algorithm: _common_pb2.KeyAlgorithm
    key: KeyInfo
    def __init__(self, der: _Optional[bytes] = ..., pem: _Optional[str] = ..., algorithm: _Optional[_Union[_common_pb2.KeyAlgorithm, str]] = ..., key: _Optional[_Union[KeyInfo, _Mapping]] = ...) -> None: ...

class HsmServiceSignRequest(_message.Message):
    __slots__ = ("key", "algorithm", "digest", "data")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    algorithm: _common_pb2.SignatureAlgorithm
    digest: bytes
    data: bytes
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., algorithm: _Optional[_Union[_common_pb2.SignatureAlgorithm, str]] = ..., digest: _Optional[bytes] = ..., data: _Optional[bytes] = ...) -> None: ...

class HsmServiceSignResponse(_message.Message):
    __slots__ = ("signature", "key_uri")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_URI_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    key_uri: str
    def __init__(self, signature: _Optional[bytes] = ..., key_uri: _Optional[str] = ...) -> None: ...

class SignStreamRequest(_message.Message):
    __slots__ = ("request_id", "key", "algorithm", "digest", "data", "digest_batch")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DIGEST_BATCH_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    key: KeyRef
    algorithm: _common_pb2.SignatureAlgorithm
    digest: bytes
    data: bytes
    digest_batch: DigestBatch
    def __init__(self, request_id: _Optional[int] = ..., key: _Optional[_Union[KeyRef, _Mapping]] = ..., algorithm: _Optional[_Union[_common_pb2.SignatureAlgorithm, str]] = ..., digest: _Optional[bytes] = ..., data: _Optional[bytes] = ..., digest_batch: _Optional[_Union[DigestBatch, _Mapping]] = ...) -> None: ...

class DigestBatch(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, digests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SignatureBatch(_message.Message):
    __slots__ = ("signatures",)
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    signatures: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, signatures: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SignStreamResponse(_message.Message):
    __slots__ = ("request_id", "signature", "error", "signature_batch")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_BATCH_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    signature: bytes
    error: _status_pb2.Status
    signature_batch: SignatureBatch
    def __init__(self, request_id: _Optional[int] = ..., signature: _Optional[bytes] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., signature_batch: _Optional[_Union[SignatureBatch, _Mapping]] = ...) -> None: ...

class EcdhDerivation(_message.Message):
    __slots__ = ("peer_public_key",)
    PEER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    peer_public_key: bytes
    def __init__(self, peer_public_key: _Optional[bytes] = ...) -> None: ...

class AesEcbEncryptDataDerivation(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class AesCbcEncryptDataDerivation(_message.Message):
    __slots__ = ("iv", "data")
    IV_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    iv: bytes
    data: bytes
    def __init__(self, iv: _Optional[bytes] = ..., data: _Optional[bytes] = ...) -> None: ...

class DerivedKeyTemplate(_message.Message):
    __slots__ = ("label", "id", "algorithm", "extractable", "persistent")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    EXTRACTABLE_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_FIELD_NUMBER: _ClassVar[int]
    label: str
    id: bytes
    algorithm: _common_pb2.KeyAlgorithm
    extractable: bool
    persistent: bool
    def __init__(self, label: _Optional[str] = ..., id: _Optional[bytes] = ..., algorithm: _Optional[_Union[_common_pb2.KeyAlgorithm, str]] = ..., extractable: _Optional[bool] = ..., persistent: _Optional[bool] = ...) -> None: ...

class DeriveRequest(_message.Message):
    __slots__ = ("base_key", "ecdh", "aes_ecb_encrypt_data", "aes_cbc_encrypt_data", "template", "return_value")
    BASE_KEY_FIELD_NUMBER: _ClassVar[int]
    ECDH_FIELD_NUMBER: _ClassVar[int]
    AES_ECB_ENCRYPT_DATA_FIELD_NUMBER: _ClassVar[int]
    AES_CBC_ENCRYPT_DATA_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    RETURN_VALUE_FIELD_NUMBER: _ClassVar[int]
    base_key: KeyRef
    ecdh: EcdhDerivation
    aes_ecb_encrypt_data: AesEcbEncryptDataDerivation
    aes_cbc_encrypt_data: AesCbcEncryptDataDerivation
    template: DerivedKeyTemplate
    return_value: bool
    def __init__(self, base_key: _Optional[_Union[KeyRef, _Mapping]] = ..., ecdh: _Optional[_Union[EcdhDerivation, _Mapping]] = ..., aes_ecb_encrypt_data: _Optional[_Union[AesEcbEncryptDataDerivation, _Mapping]] = ..., aes_cbc_encrypt_data: _Optional[_Union[AesCbcEncryptDataDerivation, _Mapping]] = ..., template: _Optional[_Union[DerivedKeyTemplate, _Mapping]] = ..., return_value: _Optional[bool] = ...) -> None: ...

class DeriveResponse(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: KeyInfo
    value: bytes
    def __init__(self, key: _Optional[_Union[KeyInfo, _Mapping]] = ..., value: _Optional[bytes] = ...) -> None: ...

class GenerateKeyRequest(_message.Message):
    __slots__ = ("token", "label", "id", "algorithm", "usages", "ephemeral", "extractable")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    USAGES_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    EXTRACTABLE_FIELD_NUMBER: _ClassVar[int]
    token: str
    label: str
    id: bytes
    algorithm: _common_pb2.KeyAlgorithm
    usages: _containers.RepeatedScalarFieldContainer[KeyUsage]
    ephemeral: bool
    extractable: bool
    def __init__(self, token: _Optional[str] = ..., label: _Optional[str] = ..., id: _Optional[bytes] = ..., algorithm: _Optional[_Union[_common_pb2.KeyAlgorithm, str]] = ..., usages: _Optional[_Iterable[_Union[KeyUsage, str]]] = ..., ephemeral: _Optional[bool] = ..., extractable: _Optional[bool] = ...) -> None: ...

class GenerateKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyInfo
    def __init__(self, key: _Optional[_Union[KeyInfo, _Mapping]] = ...) -> None: ...

class DeleteKeyRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ...) -> None: ...

class DeleteKeyResponse(_message.Message):
    __slots__ = ("deleted_objects",)
    DELETED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    deleted_objects: int
    def __init__(self, deleted_objects: _Optional[int] = ...) -> None: ...

class WrapKeyRequest(_message.Message):
    __slots__ = ("key", "wrapping_key", "mechanism")
    KEY_FIELD_NUMBER: _ClassVar[int]
    WRAPPING_KEY_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    wrapping_key: KeyRef
    mechanism: WrapMechanism
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., wrapping_key: _Optional[_Union[KeyRef, _Mapping]] = ..., mechanism: _Optional[_Union[WrapMechanism, str]] = ...) -> None: ...

class WrapKeyResponse(_message.Message):
    __slots__ = ("wrapped_key", "key", "wrapping_key_uri", "mechanism")
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    WRAPPING_KEY_URI_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    wrapped_key: bytes
    key: KeyInfo
    wrapping_key_uri: str
    mechanism: WrapMechanism
    def __init__(self, wrapped_key: _Optional[bytes] = ..., key: _Optional[_Union[KeyInfo, _Mapping]] = ..., wrapping_key_uri: _Optional[str] = ..., mechanism: _Optional[_Union[WrapMechanism, str]] = ...) -> None: ...

class UnwrappedKeyTemplate(_message.Message):
    __slots__ = ("label", "id", "algorithm", "usages", "extractable", "ephemeral")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    USAGES_FIELD_NUMBER: _ClassVar[int]
    EXTRACTABLE_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    label: str
    id: bytes
    algorithm: _common_pb2.KeyAlgorithm
    usages: _containers.RepeatedScalarFieldContainer[KeyUsage]
    extractable: bool
    ephemeral: bool
    def __init__(self, label: _Optional[str] = ..., id: _Optional[bytes] = ..., algorithm: _Optional[_Union[_common_pb2.KeyAlgorithm, str]] = ..., usages: _Optional[_Iterable[_Union[KeyUsage, str]]] = ..., extractable: _Optional[bool] = ..., ephemeral: _Optional[bool] = ...) -> None: ...

class UnwrapKeyRequest(_message.Message):
    __slots__ = ("wrapping_key", "mechanism", "wrapped_key", "template")
    WRAPPING_KEY_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    wrapping_key: KeyRef
    mechanism: WrapMechanism
    wrapped_key: bytes
    template: UnwrappedKeyTemplate
    def __init__(self, wrapping_key: _Optional[_Union[KeyRef, _Mapping]] = ..., mechanism: _Optional[_Union[WrapMechanism, str]] = ..., wrapped_key: _Optional[bytes] = ..., template: _Optional[_Union[UnwrappedKeyTemplate, _Mapping]] = ...) -> None: ...

class UnwrapKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyInfo
    def __init__(self, key: _Optional[_Union[KeyInfo, _Mapping]] = ...) -> None: ...

class RewrapForPeerRequest(_message.Message):
    __slots__ = ("wrapping_key", "mechanism", "wrapped_key", "key_algorithm", "peer_public_key")
    WRAPPING_KEY_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PEER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    wrapping_key: KeyRef
    mechanism: WrapMechanism
    wrapped_key: bytes
    key_algorithm: _common_pb2.KeyAlgorithm
    peer_public_key: bytes
    def __init__(self, wrapping_key: _Optional[_Union[KeyRef, _Mapping]] = ..., mechanism: _Optional[_Union[WrapMechanism, str]] = ..., wrapped_key: _Optional[bytes] = ..., key_algorithm: _Optional[_Union[_common_pb2.KeyAlgorithm, str]] = ..., peer_public_key: _Optional[bytes] = ...) -> None: ...

class RewrapForPeerResponse(_message.Message):
    __slots__ = ("wrapped_key", "hsm_public_key", "kdf", "mechanism", "key_algorithm")
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    HSM_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    KDF_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    KEY_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    wrapped_key: bytes
    hsm_public_key: bytes
    kdf: TransportKdf
    mechanism: WrapMechanism
    key_algorithm: _common_pb2.KeyAlgorithm
    def __init__(self, wrapped_key: _Optional[bytes] = ..., hsm_public_key: _Optional[bytes] = ..., kdf: _Optional[_Union[TransportKdf, str]] = ..., mechanism: _Optional[_Union[WrapMechanism, str]] = ..., key_algorithm: _Optional[_Union[_common_pb2.KeyAlgorithm, str]] = ...) -> None: ...
