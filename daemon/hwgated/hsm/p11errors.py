"""python-pkcs11 exceptions -> HwgateError subclasses (hwgated.errors), once, inside the worker.

Only the exception class name (a CKR_* code) goes into the message: it is
enough to diagnose and cannot carry data from the request. ``is_fatal`` marks
the errors after which this worker's session is useless; the worker then exits
and the pool starts a fresh one (a new process is a new PKCS#11 application,
so it logs in again).
"""

from __future__ import annotations

from pkcs11 import exceptions as p11

from hwgated.hsm.errors import (
    AlgorithmMismatch,
    HsmError,
    HsmLoginFailed,
    HsmUnavailable,
    HwgateError,
    InvalidArgument,
    KeyNotFound,
    MechanismNotSupported,
)

_FATAL = (
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.DeviceMemory,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.GeneralError,
)
STALE_HANDLE = (p11.ObjectHandleInvalid, p11.KeyHandleInvalid)
_INVALID = (
    p11.ArgumentsBad,
    p11.AttributeValueInvalid,
    p11.DataInvalid,
    p11.DataLenRange,
    p11.DomainParamsInvalid,
    p11.KeySizeRange,
    p11.MechanismParamInvalid,
    p11.MultipleObjectsReturned,
    p11.PublicKeyInvalid,
    p11.TemplateIncomplete,
    p11.TemplateInconsistent,
)
_LOGIN_MESSAGES: dict[type[p11.PKCS11Error], str] = {
    p11.PinIncorrect: "the token rejected the user PIN (PIN_INCORRECT)",
    p11.PinLocked: "the user PIN is locked (PIN_LOCKED)",
    p11.PinExpired: "the user PIN has expired (PIN_EXPIRED)",
    p11.PinInvalid: "the user PIN has invalid characters (PIN_INVALID)",
    p11.PinLenRange: "the user PIN has the wrong length (PIN_LEN_RANGE)",
    p11.UserPinNotInitialized: "the token has no user PIN set (USER_PIN_NOT_INITIALIZED)",
}


def is_fatal(exc: BaseException) -> bool:
    """True when the session or token is gone and only a new worker can recover."""
    return isinstance(exc, _FATAL)


def translate(exc: p11.PKCS11Error) -> HwgateError:
    """The HsmError for a PKCS#11 failure during an operation."""
    name = type(exc).__name__
    if isinstance(exc, p11.NoSuchKey):
        return KeyNotFound("no key matches the reference")
    if isinstance(exc, p11.MechanismInvalid | p11.FunctionNotSupported):
        return MechanismNotSupported(f"the token does not support this mechanism ({name})")
    if isinstance(exc, p11.KeyTypeInconsistent):
        return AlgorithmMismatch(f"the key type does not fit the mechanism ({name})")
    if isinstance(exc, _INVALID):
        return InvalidArgument(f"the token rejected the request ({name})")
    if is_fatal(exc):
        return HsmUnavailable(f"the token session was lost ({name})")
    return HsmError(f"PKCS#11 error {name}")


def translate_login(exc: p11.PKCS11Error) -> HwgateError:
    """The HsmError for a failed C_Login; PIN problems become HsmLoginFailed."""
    for cls, message in _LOGIN_MESSAGES.items():
        if isinstance(exc, cls):
            return HsmLoginFailed(message)
    return HsmUnavailable(f"login failed ({type(exc).__name__})")
