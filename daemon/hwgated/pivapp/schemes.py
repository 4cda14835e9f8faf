"""Signature schemes for card keys, with the protocol's errors as API errors.

:mod:`hwgated.piv.schemes` is pure and raises its own ``SchemeError`` family;
this is where those become INVALID_DIGEST, ALGORITHM_MISMATCH or CARD_ERROR,
once, for PivService and the signing job alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hwgated import errors
from hwgated.piv import schemes
from hwgated.piv.errors import DigestLengthError, PivParseError, SchemeError
from hwgated.piv.schemes import Scheme
from hwgated.piv.slots import Algorithm


@contextlib.contextmanager
def _as_api_errors() -> Iterator[None]:
    try:
        yield
    except DigestLengthError as exc:
        raise errors.InvalidDigest(str(exc), expected_length=exc.expected_length) from None
    except SchemeError as exc:
        raise errors.AlgorithmMismatch(str(exc)) from None
    except PivParseError as exc:
        raise errors.CardError(str(exc)) from None


def scheme_named(name: str) -> Scheme:
    """The scheme for a SignatureAlgorithm name; INVALID_ARGUMENT / ALGORITHM_MISMATCH otherwise."""
    if name in ("", "UNSPECIFIED"):
        raise errors.InvalidArgument("algorithm must be set", field="algorithm")
    with _as_api_errors():
        return schemes.scheme_named(name)


def check_digest(scheme: Scheme, digest: bytes) -> None:
    """INVALID_DIGEST unless *digest* is exactly as long as the scheme's hash."""
    with _as_api_errors():
        scheme.check_digest(digest)


def key_algorithm(certificate: bytes) -> Algorithm:
    """The key type of *certificate*; CARD_ERROR if it does not parse."""
    with _as_api_errors():
        return schemes.key_algorithm(certificate)


def card_block(scheme: Scheme, algorithm: Algorithm, digest: bytes) -> bytes:
    """The block GENERAL AUTHENTICATE signs; ALGORITHM_MISMATCH / INVALID_DIGEST."""
    with _as_api_errors():
        return schemes.card_block(scheme, algorithm, digest)
