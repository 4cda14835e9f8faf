"""python-pkcs11 exceptions -> HwgateError subclasses (hwgated.errors), once, inside the worker.

One table, ``CKR_TABLE``, names every exception class python-pkcs11 can raise
(one per ``CKR_*`` it maps) with the ErrorReason class it becomes and whether
the worker is unusable afterwards. A few return codes python-pkcs11 raises as a
bare ``PKCS11Error`` with a fixed text (``CKR_CRYPTOKI_NOT_INITIALIZED``, and
"Unmapped error code 0x..." for codes it has no class for, such as
``CKR_KEY_FUNCTION_NOT_PERMITTED``): ``_BARE`` recognises those by the code.

"Unusable" (the worker exits and the pool starts a fresh one, which is a new
PKCS#11 application and logs in again) is kept for real session, login or
device loss: restarting costs a process start and a login, and every request
pipelined to that worker. A permanent error such as a template the module
rejects (``CKR_GENERAL_ERROR`` from tpm2-pkcs11) must not cost a worker, nor
tell the caller to retry (``HSM_UNAVAILABLE``) what will fail again.

Only the exception class name (a CKR_* name) goes into the message: it is
enough to diagnose and cannot carry data from the request.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pkcs11 import exceptions as p11

from hwgated.hsm.errors import (
    AlgorithmMismatch,
    HsmError,
    HsmLoginFailed,
    HsmUnavailable,
    HwgateError,
    InvalidArgument,
    KeyNotFound,
    KeyUsageNotAllowed,
    MechanismNotSupported,
)


class Outcome(NamedTuple):
    """What one CKR_* means for the caller (``error``) and for the worker (``fatal``)."""

    error: type[HwgateError]
    fatal: bool = False


_LOST = Outcome(HsmUnavailable, fatal=True)
_BAD = Outcome(InvalidArgument)
_HSM = Outcome(HsmError)
_USAGE = Outcome(KeyUsageNotAllowed)
_MECH = Outcome(MechanismNotSupported)
_TYPE = Outcome(AlgorithmMismatch)
_GONE = Outcome(KeyNotFound)
_BUSY = Outcome(HsmUnavailable)

CKR_TABLE: dict[type[p11.PKCS11Error], Outcome] = {
    # -- the worker is unusable: only a new process (new session, new login) helps --
    p11.SessionHandleInvalid: _LOST,  # the module forgot our session (restarted backend)
    p11.SessionClosed: _LOST,  # the session was closed under us
    p11.DeviceRemoved: _LOST,  # the token left its slot
    p11.TokenNotPresent: _LOST,  # no token in the slot any more
    p11.TokenNotRecognised: _LOST,  # the slot holds something else now
    # CKR_DEVICE_ERROR: the device or the link to it failed (a network HSM's lost
    # connection is reported so); nothing about the request, and the session is
    # not to be trusted after it.
    p11.DeviceError: _LOST,
    # Our one login is gone (the token logged every session out): every later key
    # use would fail; a new worker logs in again.
    p11.UserNotLoggedIn: _LOST,
    # -- the request is malformed or does not fit the token: INVALID_ARGUMENT --
    p11.ArgumentsBad: _BAD,
    p11.AttributeReadOnly: _BAD,
    p11.AttributeTypeInvalid: _BAD,
    p11.AttributeValueInvalid: _BAD,
    p11.DataInvalid: _BAD,
    p11.DataLenRange: _BAD,
    p11.DomainParamsInvalid: _BAD,
    p11.EncryptedDataInvalid: _BAD,
    p11.EncryptedDataLenRange: _BAD,
    p11.KeySizeRange: _BAD,
    p11.MechanismParamInvalid: _BAD,
    p11.MultipleObjectsReturned: _BAD,  # an ambiguous key reference
    p11.PublicKeyInvalid: _BAD,
    p11.SignatureInvalid: _BAD,
    p11.SignatureLenRange: _BAD,
    p11.TemplateIncomplete: _BAD,
    p11.TemplateInconsistent: _BAD,
    p11.WrappedKeyInvalid: _BAD,
    p11.WrappedKeyLenRange: _BAD,
    p11.UnwrappingKeySizeRange: _BAD,
    p11.WrappingKeySizeRange: _BAD,
    # -- the key cannot do this --
    p11.KeyTypeInconsistent: _TYPE,
    p11.KeyIndigestible: _TYPE,
    p11.UnwrappingKeyTypeInconsistent: _TYPE,
    p11.WrappingKeyTypeInconsistent: _TYPE,
    p11.KeyUnextractable: _USAGE,
    p11.KeyNotWrappable: _USAGE,
    p11.AttributeSensitive: _USAGE,  # reading a sensitive value (CKA_VALUE)
    # -- the key is not there --
    p11.NoSuchKey: _GONE,
    p11.ObjectHandleInvalid: _GONE,  # the worker retries once with a fresh lookup first
    p11.KeyHandleInvalid: _GONE,
    p11.WrappingKeyHandleInvalid: _GONE,
    p11.UnwrappingKeyHandleInvalid: _GONE,
    # -- the token lacks the function --
    p11.MechanismInvalid: _MECH,
    p11.FunctionNotSupported: _MECH,
    p11.RandomNoRNG: _MECH,
    p11.RandomSeedNotSupported: _MECH,
    # -- the token cannot serve now, a new worker would not do better --
    p11.SessionCount: _BUSY,
    p11.NoSuchToken: _BUSY,
    p11.MultipleTokensReturned: _BUSY,
    p11.SlotIDInvalid: _BUSY,
    # -- permanent refusals with no better meaning: HSM_ERROR, the worker stays --
    # CKR_GENERAL_ERROR is what tpm2-pkcs11 answers to a template it dislikes: a
    # permanent error for that request, not a lost session.
    p11.GeneralError: _HSM,
    p11.FunctionFailed: _HSM,
    p11.FunctionRejected: _HSM,
    p11.FunctionCancelled: _HSM,
    p11.DeviceMemory: _HSM,  # the token is full
    p11.HostMemory: _HSM,
    p11.TokenWriteProtected: _HSM,
    p11.SessionReadOnly: _HSM,
    p11.SessionExists: _HSM,
    p11.SessionReadOnlyExists: _HSM,
    p11.SessionReadWriteSOExists: _HSM,
    p11.OperationActive: _HSM,
    p11.OperationNotInitialized: _HSM,
    p11.KeyNeeded: _HSM,
    p11.KeyNotNeeded: _HSM,
    p11.ExceededMaxIterations: _HSM,
    p11.NoEvent: _HSM,
    # PIN and login codes belong to C_Login (translate_login); seen during an
    # operation they mean a context-specific login this layer does not do.
    p11.PinIncorrect: _HSM,
    p11.PinInvalid: _HSM,
    p11.PinLenRange: _HSM,
    p11.PinExpired: _HSM,
    p11.PinLocked: _HSM,
    p11.PinTooWeak: _HSM,
    p11.UserPinNotInitialized: _HSM,
    p11.UserAlreadyLoggedIn: _HSM,
    p11.AnotherUserAlreadyLoggedIn: _HSM,
    p11.UserTooManyTypes: _HSM,
}

CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_KEY_FUNCTION_NOT_PERMITTED = 0x68
# Codes python-pkcs11 raises as a bare PKCS11Error, by code.
_BARE: dict[int, tuple[str, Outcome]] = {
    # The module was finalized under us (or never initialized): the worker's
    # whole PKCS#11 application is gone.
    CKR_CRYPTOKI_NOT_INITIALIZED: ("CKR_CRYPTOKI_NOT_INITIALIZED", _LOST),
    # The key's own attributes forbid the function (e.g. CKA_SIGN false).
    CKR_KEY_FUNCTION_NOT_PERMITTED: ("CKR_KEY_FUNCTION_NOT_PERMITTED", _USAGE),
}
_UNMAPPED = re.compile(r"Unmapped error code (0x[0-9a-fA-F]+)")
_NOT_INITIALIZED_TEXT = "not initialized"

STALE_HANDLE = (p11.ObjectHandleInvalid, p11.KeyHandleInvalid)
_LOGIN_MESSAGES: dict[type[p11.PKCS11Error], str] = {
    p11.PinIncorrect: "the token rejected the user PIN (PIN_INCORRECT)",
    p11.PinLocked: "the user PIN is locked (PIN_LOCKED)",
    p11.PinExpired: "the user PIN has expired (PIN_EXPIRED)",
    p11.PinInvalid: "the user PIN has invalid characters (PIN_INVALID)",
    p11.PinLenRange: "the user PIN has the wrong length (PIN_LEN_RANGE)",
    p11.UserPinNotInitialized: "the token has no user PIN set (USER_PIN_NOT_INITIALIZED)",
}


def classify(exc: p11.PKCS11Error) -> tuple[str, Outcome]:
    """The CKR name and outcome of a python-pkcs11 exception; an unknown one is
    ``HSM_ERROR`` and leaves the worker running."""
    outcome = CKR_TABLE.get(type(exc))
    if outcome is not None:
        return type(exc).__name__, outcome
    text = str(exc)
    code = _bare_code(text)
    if code in _BARE:
        return _BARE[code]
    if code is not None:
        return f"CKR 0x{code:x}", _HSM
    return type(exc).__name__, _HSM


def _bare_code(text: str) -> int | None:
    if _NOT_INITIALIZED_TEXT in text and "already" not in text:
        return CKR_CRYPTOKI_NOT_INITIALIZED
    match = _UNMAPPED.search(text)
    return int(match.group(1), 16) if match else None


def is_fatal(exc: BaseException) -> bool:
    """True when the session, login or token is gone and only a new worker can recover."""
    return isinstance(exc, p11.PKCS11Error) and classify(exc)[1].fatal


def translate(exc: p11.PKCS11Error) -> HwgateError:
    """The HwgateError for a PKCS#11 failure during an operation."""
    name, outcome = classify(exc)
    cls = outcome.error
    if cls is KeyNotFound:
        return KeyNotFound(f"no key matches the reference ({name})")
    if cls is MechanismNotSupported:
        return MechanismNotSupported(f"the token does not support this mechanism ({name})")
    if cls is AlgorithmMismatch:
        return AlgorithmMismatch(f"the key type does not fit the mechanism ({name})")
    if cls is InvalidArgument:
        return InvalidArgument(f"the token rejected the request ({name})")
    if cls is KeyUsageNotAllowed:
        return KeyUsageNotAllowed(f"the key's attributes forbid this operation ({name})")
    if cls is HsmUnavailable:
        if outcome.fatal:
            return HsmUnavailable(f"the token session was lost ({name})")
        return HsmUnavailable(f"the token cannot serve now ({name})")
    return HsmError(f"PKCS#11 error {name}", ckr=name)


def translate_login(exc: p11.PKCS11Error) -> HwgateError:
    """The HsmError for a failed C_Login; PIN problems become HsmLoginFailed."""
    for cls, message in _LOGIN_MESSAGES.items():
        if isinstance(exc, cls):
            return HsmLoginFailed(message)
    return HsmUnavailable(f"login failed ({type(exc).__name__})")
