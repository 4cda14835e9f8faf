"""hwgate: client library and admin CLI for the hwgated hardware gateway.

    import hwgate
    with hwgate.connect() as client:          # $HWGATE_ADDR or /run/hwgate/hwgate.sock
        for reader in client.list_readers(): ...

``hwgate.aio.connect`` is the asyncio twin. Errors are :class:`HwgateError`
subclasses named after the daemon's ErrorReason (see :mod:`hwgate.errors`).
"""

from hwgate import errors
from hwgate.client import CardSession, Client, connect, digest_for
from hwgate.errors import (
    CardNotPresent,
    CardRemoved,
    HsmUnavailable,
    HsmWorkerLost,
    HwgateError,
    KeyExists,
    KeyNotFound,
    LastPinAttempt,
    LastPukAttempt,
    PcscUnavailable,
    PinBlocked,
    PinFormat,
    PinIncorrect,
    PinRequired,
    PolicyDenied,
    PukBlocked,
    PukIncorrect,
    ReaderBusy,
    ReaderNotFound,
    SessionExpired,
    SessionNotFound,
    ShuttingDown,
    SubscriberTooSlow,
)
from hwgate.events import EventStream

__version__ = "0.1.0"

__all__ = [
    "CardNotPresent",
    "CardRemoved",
    "CardSession",
    "Client",
    "EventStream",
    "HsmUnavailable",
    "HsmWorkerLost",
    "HwgateError",
    "KeyExists",
    "KeyNotFound",
    "LastPinAttempt",
    "LastPukAttempt",
    "PcscUnavailable",
    "PinBlocked",
    "PinFormat",
    "PinIncorrect",
    "PinRequired",
    "PolicyDenied",
    "PukBlocked",
    "PukIncorrect",
    "ReaderBusy",
    "ReaderNotFound",
    "SessionExpired",
    "SessionNotFound",
    "ShuttingDown",
    "SubscriberTooSlow",
    "connect",
    "digest_for",
    "errors",
]
