"""The HSM layer: PKCS#11 tokens served by restartable worker processes.

Only this package imports ``pkcs11``. The gRPC servicer uses ``HsmPool`` (one
per ``[[hsm.token]]``); errors are hwgated.errors classes (the edge maps reasons).
"""

from hwgated.hsm.config import TokenConfig, read_pin
from hwgated.hsm.errors import (
    AlgorithmMismatch,
    HsmError,
    HsmLoginFailed,
    HsmUnavailable,
    HsmWorkerLost,
    InvalidArgument,
    InvalidDigest,
    KeyExists,
    KeyNotFound,
    KeyUsageNotAllowed,
    MechanismNotSupported,
)
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.pool import HsmPool, PoolState
from hwgated.hsm.types import (
    DerivedKey,
    DiversifyMechanism,
    KeyAlgorithm,
    KeyInfo,
    KeyPairSpec,
    KeyUsage,
    SecretKeySpec,
    SignAlgorithm,
    WrapMechanism,
)

__all__ = [
    "AlgorithmMismatch",
    "DerivedKey",
    "DiversifyMechanism",
    "HsmError",
    "HsmLoginFailed",
    "HsmPool",
    "HsmUnavailable",
    "HsmWorkerLost",
    "InvalidArgument",
    "InvalidDigest",
    "KeyAlgorithm",
    "KeyClass",
    "KeyExists",
    "KeyInfo",
    "KeyNotFound",
    "KeyPairSpec",
    "KeyRef",
    "KeyUsage",
    "KeyUsageNotAllowed",
    "MechanismNotSupported",
    "PoolState",
    "SecretKeySpec",
    "SignAlgorithm",
    "TokenConfig",
    "WrapMechanism",
    "read_pin",
]
