"""ListKeys pages (AIP-158): the page size, the page cut and the opaque page token.

Why a cursor and not an offset: keys are made and deleted between a client's
pages, and an offset would then skip or repeat keys. The token holds the
*position* of the last key returned (token name, label, id, class and a short
digest of the key's description, in that order, which is the list's order), so
the next page starts after that position whatever happened before it: a key
made or deleted between pages is seen or not as the order places it, and none
is listed twice.

The position is of a key the same caller was just shown, and the keys are
filtered by policy *before* the cut, so neither the token nor the page sizes
depend on keys the caller may not see. A token is not a grant: a request that
carries one is authorized like any other (the policy may have changed since).

Why a digest ends every key's position: two objects may share label, id and
class on a token (GenerateKey never makes such twins, but other tools may), and
a position two keys share is no place to resume from; with the digest only
keys that look exactly alike share one. Those, and keys whose position is too
large to carry (labels over ``MAX_LABEL_BYTES``, ids over ``MAX_ID_BYTES``,
token names over ``MAX_TOKEN_NAME_BYTES``), are handled by counts: the cursor
says how many keys at the anchor position were returned (``ties``) and how
many after it (``extra``). For ordinary keys ``ties`` is 1 and ``extra`` 0.

The token is url-safe base64 (no padding) of a versioned binary structure
ending in a tag: the first 16 bytes of SHA-256 over the filter of the request
(``token`` and ``label_pattern``; ``page_size`` may change between pages, as
AIP-158 requires) and the structure. A token sent with another filter, a
damaged token, and any text this module did not make are INVALID_ARGUMENT
(field ``page_token``). The tag is not a MAC: there is no secret, so a token
stays valid across a daemon restart and between gateways that share an HSM.
Forging one gains nothing (it only moves where a listing of keys the caller
may see starts), so tamper evidence is all it needs to give.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from hwgate.v1 import hsm_pb2
from hwgated.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

VERSION = 1
MAX_TOKEN_NAME_BYTES = 256
MAX_LABEL_BYTES = 4096  # MAX_LABEL_LENGTH characters of hsm_convert, UTF-8
MAX_ID_BYTES = 256
TWIN_DIGEST_BYTES = 8
TAG_BYTES = 16
_DOMAIN = b"hwgate.v1.HsmService.ListKeys page_token\x00"

# version, then three length-prefixed fields (token name, label, id)
_HEAD = struct.Struct(">B")
_LENGTH = struct.Struct(">H")
# key class, twin digest, ties, extra
_TAIL = struct.Struct(f">H{TWIN_DIGEST_BYTES}sII")
_FIELD_LIMITS = (MAX_TOKEN_NAME_BYTES, MAX_LABEL_BYTES, MAX_ID_BYTES)
_MAX_RAW = _HEAD.size + sum(_LENGTH.size + n for n in _FIELD_LIMITS) + _TAIL.size + TAG_BYTES
MAX_PAGE_TOKEN_LENGTH = -(-_MAX_RAW * 4 // 3)  # base64 without padding
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

# (token name, label, id, key class, twin digest); bytes compare as UTF-8 code points do.
Position = tuple[bytes, bytes, bytes, int, bytes]
_START: Position = (b"", b"", b"", 0, bytes(TWIN_DIGEST_BYTES))  # before every key


@dataclass(frozen=True)
class ListFilter:
    """The request fields a page token is bound to."""

    token: str
    label_pattern: str

    def framed(self) -> bytes:
        parts = (self.token.encode(), self.label_pattern.encode())
        return b"".join(struct.pack(">I", len(p)) + p for p in parts)


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after ``ties`` keys at ``position``, then ``extra`` more."""

    position: Position
    ties: int
    extra: int = 0

    def resume(self, positions: Sequence[Position]) -> int:
        """The index in the sorted *positions* of the next page's first key.

        Only as many keys at the anchor position are skipped as are still there,
        so a deleted anchor never costs the key after it.
        """
        low = bisect_left(positions, self.position)
        high = bisect_right(positions, self.position, lo=low)
        return min(low + min(self.ties, high - low) + self.extra, len(positions))

    def passes(self, token_name: str) -> bool:
        """True when every key of the token named so lies before the cursor."""
        return token_name.encode() < self.position[0]


@dataclass(frozen=True)
class Page:
    keys: list[hsm_pb2.KeyInfo]
    next_page_token: str


def page_size(requested: int) -> int:
    """AIP-158: 0 is the default, over the maximum is the maximum, negative is refused."""
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def position(key: hsm_pb2.KeyInfo) -> Position:
    """A key's place in the list: token, label, id, class, then a digest of all it shows."""
    twin = hashlib.sha256(key.SerializeToString(deterministic=True)).digest()
    return (
        key.token.encode(),
        key.label.encode(),
        bytes(key.id),
        int(key.key_class),
        twin[:TWIN_DIGEST_BYTES],
    )


def cut(
    keys: Iterable[hsm_pb2.KeyInfo], size: int, cursor: Cursor | None, list_filter: ListFilter
) -> Page:
    """One page of *keys* (every key the caller may see that matches the filter)."""
    entries = sorted(((position(k), k) for k in keys), key=itemgetter(0))
    positions = [p for p, _ in entries]
    start = 0 if cursor is None else cursor.resume(positions)
    end = min(start + size, len(entries))
    token = "" if end >= len(entries) else encode(_cursor_before(positions, end), list_filter)
    return Page([k for _, k in entries[start:end]], token)


def _cursor_before(positions: Sequence[Position], end: int) -> Cursor:
    """The cursor whose ``resume`` is *end* on these positions, anchored as late as it can."""
    anchor = end - 1
    while anchor >= 0 and not _carried(positions[anchor]):
        anchor -= 1
    if anchor < 0:
        return Cursor(_START, ties=0, extra=end)
    low = bisect_left(positions, positions[anchor])
    return Cursor(positions[anchor], ties=anchor + 1 - low, extra=end - 1 - anchor)


def _carried(place: Position) -> bool:
    return all(len(f) <= n for f, n in zip(place[:3], _FIELD_LIMITS, strict=True))


def encode(cursor: Cursor, list_filter: ListFilter) -> str:
    """The opaque page token of *cursor* for requests with *list_filter*."""
    name, label, key_id, key_class, twin = cursor.position
    body = _HEAD.pack(VERSION)
    for field in (name, label, key_id):
        body += _LENGTH.pack(len(field)) + field
    body += _TAIL.pack(key_class, twin, cursor.ties, cursor.extra)
    raw = body + _tag(body, list_filter)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str, list_filter: ListFilter) -> Cursor:
    """The cursor of a page token made by :func:`encode` for this filter.

    Anything else (too long, not canonical base64, another version, a bad
    structure, a tag that does not match) is INVALID_ARGUMENT, field page_token.
    """
    if len(text) > MAX_PAGE_TOKEN_LENGTH or not _BASE64URL.fullmatch(text):
        raise _invalid()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise _invalid()  # non-canonical: stray bits in the last character
    if len(raw) < TAG_BYTES:
        raise _invalid()
    body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if tag != _tag(body, list_filter):
        raise _invalid()
    return _parse(body)


def _parse(body: bytes) -> Cursor:
    if len(body) < _HEAD.size or _HEAD.unpack_from(body)[0] != VERSION:
        raise _invalid()
    offset = _HEAD.size
    fields: list[bytes] = []
    for limit in _FIELD_LIMITS:
        if len(body) < offset + _LENGTH.size:
            raise _invalid()
        (length,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        if length > limit or len(body) < offset + length:
            raise _invalid()
        fields.append(body[offset : offset + length])
        offset += length
    if len(body) != offset + _TAIL.size:
        raise _invalid()
    key_class, twin, ties, extra = _TAIL.unpack_from(body, offset)
    if ties + extra == 0:
        raise _invalid()  # encode never makes a cursor that does not move
    name, label, key_id = fields
    return Cursor((name, label, key_id, key_class, twin), ties, extra)


def _tag(body: bytes, list_filter: ListFilter) -> bytes:
    return hashlib.sha256(_DOMAIN + list_filter.framed() + body).digest()[:TAG_BYTES]


def _invalid() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not a next_page_token of ListKeys with this token and label_pattern",
        field="page_token",
    )
