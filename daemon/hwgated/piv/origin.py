"""The relying-party origin that Authenticate binds into the 9A signature.

The digest the card signs covers SHA-256 of the origin string, and the relying
party recomputes it from *its own* origin. Both sides must therefore hash the
very same string: the RFC 6454 ASCII serialization ``scheme://host[:port]``
(lowercase scheme and host, IDNA hosts in their ``xn--`` form, no default port,
no path, query, fragment or user info). Anything else is refused rather than
normalized, so a caller never gets a signature that no relying party can check.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_AUTHORITY = re.compile(
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::(?P<port>[^:]*))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
MAX_ORIGIN_LENGTH = 2048


class OriginError(ValueError):
    """Not the ASCII serialization of an origin; the message says what is wrong."""


def check_origin(origin: str) -> str:
    """Return *origin* unchanged if it is a serialized origin; raise OriginError otherwise."""
    if not origin:
        raise OriginError("origin is empty")
    if len(origin) > MAX_ORIGIN_LENGTH or not origin.isascii() or not origin.isprintable():
        raise OriginError("origin must be printable ASCII (IDNA hosts in xn-- form)")
    scheme, sep, rest = origin.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise OriginError("origin must start with a lowercase scheme and '://'")
    if any(c in rest for c in "/?#@\\ "):
        raise OriginError("origin must be scheme://host[:port] without path, query or user")
    match = _AUTHORITY.fullmatch(rest)
    if match is None:
        raise OriginError("origin host must be a lowercase DNS name or IP literal, then :port")
    if match["port"] is not None:
        _check_port(scheme, match["port"])
    return origin


def _check_port(scheme: str, text: str) -> None:
    """Decimal, 1-65535, no leading zeros, and not the scheme's default."""
    if not text.isdigit() or text != str(int(text)) or not 0 < int(text) < 65536:
        raise OriginError("origin has an invalid port")
    if _DEFAULT_PORTS.get(scheme) == int(text):
        raise OriginError(f"origin must omit the default port {text} for {scheme}")
