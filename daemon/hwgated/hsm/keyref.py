"""Key references: a label, ``id:<hex>``, or an RFC 7512 ``pkcs11:`` URI.

Clients and policy name keys by text; the worker searches the token with the
attributes parsed here. Parsing is pure and strict: a URI carrying a PIN
(``pin-value``) is refused rather than silently ignored, because accepting it
would invite PINs into logs and audit records.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, quote_from_bytes, unquote, unquote_to_bytes

from hwgated.hsm.errors import InvalidArgument

_URI_SCHEME = "pkcs11:"
# RFC 7512 path attributes we accept; the ones not used for lookup are ignored.
_KNOWN_PATH_ATTRS = frozenset(
    {
        "token",
        "manufacturer",
        "serial",
        "model",
        "library-manufacturer",
        "library-description",
        "library-version",
        "object",
        "type",
        "id",
        "slot-description",
        "slot-manufacturer",
        "slot-id",
    }
)
_FORBIDDEN_QUERY_ATTRS = frozenset({"pin-value", "pin-source"})


class KeyClass(StrEnum):
    """Object class, spelled as RFC 7512's ``type=`` values."""

    PRIVATE = "private"
    PUBLIC = "public"
    SECRET = "secret-key"
    CERTIFICATE = "cert"
    DATA = "data"


@dataclass(frozen=True)
class KeyRef:
    """Attributes that select key objects on a token. At least a label or an id."""

    label: str | None = None
    id: bytes | None = None
    key_class: KeyClass | None = None
    token: str | None = None  # token label from a URI; checked by the pool
    token_serial: str | None = None

    def __post_init__(self) -> None:
        if self.label is None and self.id is None:
            raise InvalidArgument("a key reference needs a label or an id")

    @classmethod
    def parse(cls, text: str) -> KeyRef:
        """Parse ``label``, ``id:<hex>`` or ``pkcs11:...``; raises InvalidArgument."""
        if not text:
            raise InvalidArgument("empty key reference")
        if text.startswith(_URI_SCHEME):
            return _parse_uri(text)
        if text.startswith("id:"):
            try:
                key_id = bytes.fromhex(text[3:])
            except ValueError:
                raise InvalidArgument("id: reference is not hex") from None
            if not key_id:
                raise InvalidArgument("id: reference is empty")
            return cls(id=key_id)
        return cls(label=text)

    def to_uri(self) -> str:
        """The RFC 7512 form of this reference (percent-encoded)."""
        parts = []
        if self.token is not None:
            parts.append("token=" + quote(self.token, safe=""))
        if self.token_serial is not None:
            parts.append("serial=" + quote(self.token_serial, safe=""))
        if self.label is not None:
            parts.append("object=" + quote(self.label, safe=""))
        if self.id is not None:
            parts.append("id=" + quote_from_bytes(self.id, safe=""))
        if self.key_class is not None:
            parts.append("type=" + self.key_class.value)
        return _URI_SCHEME + ";".join(parts)

    def __str__(self) -> str:
        if self.token is None and self.token_serial is None and self.key_class is None:
            if self.id is None and self.label is not None:
                return self.label
            if self.label is None and self.id is not None:
                return "id:" + self.id.hex()
        return self.to_uri()


def _parse_uri(text: str) -> KeyRef:
    path, _, query = text[len(_URI_SCHEME) :].partition("?")
    _check_query(query)
    attrs: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, eq, value = part.partition("=")
        if not eq:
            raise InvalidArgument(f"pkcs11 URI attribute without '=': {name!r}")
        if name not in _KNOWN_PATH_ATTRS and not name.startswith("x-"):
            raise InvalidArgument(f"unknown pkcs11 URI attribute {name!r}")
        if name in attrs:
            raise InvalidArgument(f"pkcs11 URI attribute {name!r} repeated")
        attrs[name] = value
    key_id = unquote_to_bytes(attrs["id"]) if "id" in attrs else None
    return KeyRef(
        label=_text(attrs, "object"),
        id=key_id or None,
        key_class=_key_class(attrs.get("type")),
        token=_text(attrs, "token"),
        token_serial=_text(attrs, "serial"),
    )


def _check_query(query: str) -> None:
    for part in filter(None, query.split("&")):
        name = part.partition("=")[0]
        if name in _FORBIDDEN_QUERY_ATTRS:
            raise InvalidArgument("PINs are not accepted in key references")


def _text(attrs: dict[str, str], name: str) -> str | None:
    if name not in attrs:
        return None
    try:
        return unquote(attrs[name], errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument(f"pkcs11 URI attribute {name!r} is not UTF-8") from None


def _key_class(value: str | None) -> KeyClass | None:
    if value is None:
        return None
    try:
        return KeyClass(value)
    except ValueError:
        raise InvalidArgument(f"unknown pkcs11 URI type {value!r}") from None
