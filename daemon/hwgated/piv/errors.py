"""Status words turned into typed exceptions, once, at the protocol layer.

Callers above this package never compare SW integers: they catch ``InvalidPin``
and read ``retries_left``. A status word nobody has a name for is kept as is in
``UnknownStatus`` so nothing is lost on the way to the gRPC edge.

``PivParseError`` is the one base for every parser here (TLV, APDU, FASC-N,
objects): code that feeds untrusted bytes to a parser catches exactly that.
``SchemeError`` covers signature requests refused on the host (wrong digest
length, a scheme that does not fit the key). Nothing here knows the API's
error reasons: the PIV application layer translates.
"""

from __future__ import annotations

from typing import Protocol

SW_OK = 0x9000


class PivParseError(ValueError):
    """Bytes that do not parse as the structure expected (any parser in this package)."""


class PivError(Exception):
    """A card answered with a status word other than 9000."""

    def __init__(self, sw: int, message: str = "") -> None:
        super().__init__(message or f"card returned SW {sw:04X}")
        self.sw = sw


class InvalidPin(PivError):
    """Wrong PIN; ``retries_left`` is None when the card did not say (6300)."""

    def __init__(self, sw: int, retries_left: int | None) -> None:
        left = "unknown" if retries_left is None else str(retries_left)
        super().__init__(sw, f"wrong PIN, {left} retries left")
        self.retries_left = retries_left


class PinBlocked(PivError):
    """6983: the retry counter is at zero; no comparison was made."""


class SecurityStatusNotSatisfied(PivError):
    """6982: the key or object needs a PIN (or 9B authentication) first."""


class NotFound(PivError):
    """6A82: data object or application not on the card."""


class IncorrectData(PivError):
    """6A80: the card rejected the data field."""


class WrongParameters(PivError):
    """6A86: bad P1/P2 (for PIV usually an algorithm/key-reference mismatch)."""


class ReferenceNotFound(PivError):
    """6A88: no such key or PIN reference."""


class FunctionNotSupported(PivError):
    """6A81: the command is not supported (e.g. barred over contactless)."""


class WrongLength(PivError):
    """6700: Lc or Le wrong."""


class ConditionsNotSatisfied(PivError):
    """6985: conditions of use not satisfied."""


class UnknownStatus(PivError):
    """Any status word without its own class; ``sw`` is kept unchanged."""


class SchemeError(ValueError):
    """A signature request that does not fit its scheme or the card's key.

    Found on the host before any command goes out (see :mod:`schemes`).
    """


class UnknownScheme(SchemeError):
    """The name is not one of the card signature schemes."""


class DigestLengthError(SchemeError):
    """The digest is not as long as the scheme's hash; ``expected_length`` says how long."""

    def __init__(self, message: str, expected_length: int) -> None:
        super().__init__(message)
        self.expected_length = expected_length


class SchemeMismatch(SchemeError):
    """The scheme does not fit the key, or the key is of a type no scheme fits."""


_SW_ERRORS: dict[int, type[PivError]] = {
    0x6983: PinBlocked,
    0x6982: SecurityStatusNotSatisfied,
    0x6A82: NotFound,
    0x6A80: IncorrectData,
    0x6A86: WrongParameters,
    0x6A88: ReferenceNotFound,
    0x6A81: FunctionNotSupported,
    0x6700: WrongLength,
    0x6985: ConditionsNotSatisfied,
}


class HasSw(Protocol):
    """Anything carrying a status word (``ResponseApdu`` does)."""

    @property
    def sw(self) -> int: ...


def error_for_sw(sw: int) -> PivError | None:
    """The exception for *sw*, or None for 9000."""
    if sw == SW_OK:
        return None
    if sw == 0x6300:
        return InvalidPin(sw, None)
    if sw & 0xFFF0 == 0x63C0:
        return InvalidPin(sw, sw & 0x0F)
    return _SW_ERRORS.get(sw, UnknownStatus)(sw)


def check_sw(resp: HasSw) -> None:
    """Raise the typed error for *resp*'s status word; return quietly on 9000."""
    error = error_for_sw(resp.sw)
    if error is not None:
        raise error
