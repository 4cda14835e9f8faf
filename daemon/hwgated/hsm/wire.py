"""Framing and encoding on the parent <-> worker socket: a fixed schema, never pickle.

A worker runs vendor PKCS#11 code in its address space: memory corruption
there must not become code execution in the daemon, so the parent decodes
worker frames with a small tagged format that can only build plain values:
None, bools, 64-bit ints, str, bytes, bytearray (for secrets the receiver
wipes), lists, tuples, dicts with str keys, members of a fixed set of the HSM
layer's enums, and a fixed set of its records (``KeyRef``, ``KeyInfo``,
``DerivedKey``, ``WorkerInit``), each rebuilt through its constructor from
type-checked fields. Anything else (an unknown tag, a length past the end, a
count larger than the bytes left, nesting deeper than ``MAX_DEPTH``, trailing
bytes) raises ``DecodeError``; the parent then treats the worker as lost.

Frame: 4-byte big-endian length, then one encoded value. Requests:
``(request_id, op, args, kwargs)``; request id None asks for no reply.
Replies: ``(request_id, True, result)`` or ``(request_id, False, error)`` with
``error`` a dict ``{"reason": str, "message": str, "fields": {str: str|int}}``
(``hwgated.hsm.errors.error_to_wire``): errors are data, not exceptions.
Request id 0 is the worker's start-up report. The PIN travels as one raw
frame right after the init frame.

The parent side feeds bytes from an asyncio protocol into ``FrameDecoder``, so
a stalled worker can never block the event loop.
"""

from __future__ import annotations

import dataclasses
import enum
import socket
import struct
from collections.abc import Callable
from typing import Any

from hwgated.hsm.keyref import KeyClass, KeyRef
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
from hwgated.hsm.worker_init import WorkerInit

_HEADER = struct.Struct("!I")
_LEN = struct.Struct("!I")
_INT = struct.Struct("!q")
MAX_FRAME = 64 << 20
MAX_DEPTH = 16

STARTUP_ID = 0


class DecodeError(ValueError):
    """A frame that does not follow the schema: the peer is broken or hostile."""


class EncodeError(TypeError):
    """A value outside the schema was about to be sent (a bug on our side)."""


# -- the fixed schema: enums and records ----------------------------------------

_ENUMS: dict[str, type[enum.Enum]] = {
    cls.__name__: cls
    for cls in (
        KeyClass,
        SignAlgorithm,
        KeyAlgorithm,
        KeyUsage,
        KeyPairSpec,
        SecretKeySpec,
        DiversifyMechanism,
        WrapMechanism,
    )
}

Check = Callable[[Any], Any]  # validates (and may convert) one decoded field


def _opt(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _is(kind: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise DecodeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return check


def _member(cls: type[enum.Enum]) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, cls):
            raise DecodeError(f"expected {cls.__name__}")
        return value

    return check


def _frozenset_of(cls: type[enum.Enum]) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, tuple):
            raise DecodeError("expected a tuple")
        return frozenset(_member(cls)(v) for v in value)

    return check


def _str_dict(value: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise DecodeError("expected a dict of str")
    return value


def _str_tuple(value: Any) -> Any:
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise DecodeError("expected a tuple of str")
    return value


def _keyref(value: Any) -> Any:
    if not isinstance(value, KeyRef):
        raise DecodeError("expected a KeyRef")
    return value


def _records() -> dict[str, tuple[type, tuple[tuple[str, Check], ...]]]:
    opt_str, opt_bool, opt_int = _opt(_is(str)), _opt(_is(bool)), _opt(_is(int))
    return {
        "KeyRef": (
            KeyRef,
            (
                ("label", opt_str),
                ("id", _opt(_is(bytes))),
                ("key_class", _opt(_member(KeyClass))),
                ("token", opt_str),
                ("token_serial", opt_str),
            ),
        ),
        "KeyInfo": (
            KeyInfo,
            (
                ("label", _is(str)),
                ("id_hex", _is(str)),
                ("key_class", _member(KeyClass)),
                ("key_type", _member(KeyAlgorithm)),
                ("size_bits", opt_int),
                ("curve", opt_str),
                ("usages", _frozenset_of(KeyUsage)),
                ("sensitive", opt_bool),
                ("extractable", opt_bool),
                ("local", opt_bool),
                ("token_object", _is(bool)),
            ),
        ),
        "DerivedKey": (
            DerivedKey,
            (
                ("ref", _opt(_keyref)),
                ("key_length", _is(int)),
                ("value", _opt(_is(bytearray))),
            ),
        ),
        "WorkerInit": (
            WorkerInit,
            (
                ("module", _is(str)),
                ("token_label", opt_str),
                ("token_serial", opt_str),
                ("env", _str_dict),
                ("unset_env", _str_tuple),
            ),
        ),
    }


_RECORDS = _records()
_RECORD_NAMES = {cls: name for name, (cls, _) in _RECORDS.items()}
for _name, (_cls, _fields) in _RECORDS.items():  # the schema must match the dataclasses
    assert tuple(f.name for f in dataclasses.fields(_cls)) == tuple(n for n, _ in _fields), _name


# -- encoding ------------------------------------------------------------------


def _tagged_str(text: str) -> bytes:
    raw = text.encode()
    return b"s" + _LEN.pack(len(raw)) + raw


def _short(text: str) -> bytes:
    raw = text.encode()
    return bytes((len(raw),)) + raw


# Every enum member's encoding, precomputed (a request carries two or three).
_ENUM_BYTES: dict[type, dict[enum.Enum, bytes]] = {
    cls: {m: b"E" + bytes((len(name),)) + name.encode() + _tagged_str(str(m.value)) for m in cls}
    for name, cls in _ENUMS.items()
}
# Encoded KeyRefs, memoized: a stream names the same few keys over and over.
_REF_CACHE: dict[KeyRef, bytes] = {}
_REF_CACHE_MAX = 256


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodeError("value nested too deeply")
    kind = type(value)
    if value is None:
        out += b"N"
    elif kind is bool:
        out += b"T" if value else b"F"
    elif kind is int:
        try:
            out += b"i" + _INT.pack(value)
        except struct.error:
            raise EncodeError("int out of 64-bit range") from None
    elif kind is bytes:
        out += b"b" + _LEN.pack(len(value)) + value
    elif kind is str:
        raw = value.encode()
        out += b"s" + _LEN.pack(len(raw)) + raw
    elif kind is bytearray:
        out += b"B" + _LEN.pack(len(value))
        out += value
    elif kind is tuple or kind is list:
        out += (b"t" if kind is tuple else b"l") + _LEN.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif kind is dict:
        out += b"d" + _LEN.pack(len(value))
        for key, item in value.items():
            if type(key) is not str:
                raise EncodeError("dict keys must be str")
            raw = key.encode()
            out += _LEN.pack(len(raw)) + raw
            _encode(item, out, depth + 1)
    elif kind in _ENUM_BYTES:
        out += _ENUM_BYTES[kind][value]
    elif kind is KeyRef:
        cached = _REF_CACHE.get(value)
        if cached is None:
            start = len(out)
            _encode_record(value, out, depth)
            if len(_REF_CACHE) >= _REF_CACHE_MAX:
                _REF_CACHE.clear()
            _REF_CACHE[value] = bytes(out[start:])
        else:
            out += cached
    elif kind in _RECORD_NAMES:
        _encode_record(value, out, depth)
    else:
        raise EncodeError(f"{kind.__name__} is not in the worker wire schema")


def _encode_record(value: Any, out: bytearray, depth: int) -> None:
    """``R``, name, body length (u32), field count, fields."""
    name = _RECORD_NAMES[type(value)]
    fields = _RECORDS[name][1]
    out += b"R" + _short(name)
    at = len(out)
    out += bytes(_LEN.size) + bytes((len(fields),))
    for field_name, _ in fields:
        item = getattr(value, field_name)
        if type(item) is frozenset:
            item = tuple(sorted(item))
        _encode(item, out, depth + 1)
    _LEN.pack_into(out, at, len(out) - at - _LEN.size)


def encode_value(value: Any) -> bytes:
    """The encoded body of one value (no frame header)."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def encode(message: Any) -> bytes:
    """One frame holding ``message``."""
    out = bytearray(_HEADER.size)
    _encode(message, out, 0)
    _HEADER.pack_into(out, 0, len(out) - _HEADER.size)
    return bytes(out)


def raw_frame(payload: bytes | bytearray) -> bytearray:
    """One frame around raw bytes, as a bytearray the caller can wipe after sending."""
    frame = bytearray(_HEADER.pack(len(payload)))
    frame += payload
    return frame


# -- decoding ------------------------------------------------------------------


_unpack_len = _LEN.unpack_from
_unpack_int = _INT.unpack_from


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    """A u32 length at *pos* that fits in what is left; (length, position after it)."""
    if pos + 4 > len(buf):
        raise DecodeError("truncated length")
    (n,) = _unpack_len(buf, pos)
    pos += 4
    if n > len(buf) - pos:
        raise DecodeError("length past the end of the frame")
    return n, pos


def _value(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """The value at *pos* and the position after it (every bound checked)."""
    if pos >= len(buf):
        raise DecodeError("truncated value")
    tag = buf[pos]
    pos += 1
    if tag == 0x62 or tag == 0x73 or tag == 0x42:  # b s B (inlined: the hot path)
        start = pos + 4
        if start > len(buf):
            raise DecodeError("truncated length")
        end = start + _unpack_len(buf, pos)[0]
        if end > len(buf):
            raise DecodeError("length past the end of the frame")
        raw = buf[start:end]
        if tag == 0x62:
            return raw, end
        if tag == 0x73:
            return _text(raw), end
        return bytearray(raw), end
    if tag == 0x69:  # i
        if pos + 8 > len(buf):
            raise DecodeError("truncated int")
        return _unpack_int(buf, pos)[0], pos + 8
    if tag == 0x4E:  # N
        return None, pos
    if tag == 0x54:  # T
        return True, pos
    if tag == 0x46:  # F
        return False, pos
    if depth >= MAX_DEPTH:
        raise DecodeError("nested too deeply")
    if tag == 0x74 or tag == 0x6C:  # t l
        n, pos = _length(buf, pos)  # every item takes a byte at least: bounded by the frame
        items = []
        for _ in range(n):
            item, pos = _value(buf, pos, depth + 1)
            items.append(item)
        return (tuple(items) if tag == 0x74 else items), pos
    if tag == 0x64:  # d
        n, pos = _length(buf, pos)
        result: dict[str, Any] = {}
        for _ in range(n):
            k, pos = _length(buf, pos)
            key = _text(buf[pos : pos + k])
            result[key], pos = _value(buf, pos + k, depth + 1)
        return result, pos
    if tag == 0x45:  # E
        name, pos = _short_text(buf, pos)
        cls = _ENUMS.get(name)
        if cls is None:
            raise DecodeError("unknown enum")
        raw, pos = _value(buf, pos, depth + 1)
        try:
            return cls(raw), pos
        except ValueError:
            raise DecodeError(f"not a {cls.__name__} value") from None
    if tag == 0x52:  # R
        return _record(buf, pos, depth)
    raise DecodeError(f"unknown tag 0x{tag:02x}")


def _short_text(buf: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(buf):
        raise DecodeError("truncated name")
    n = buf[pos]
    pos += 1
    if pos + n > len(buf):
        raise DecodeError("truncated name")
    return _text(buf[pos : pos + n]), pos + n


# Decoded KeyRefs by their encoding (immutable, so sharing them is safe): the worker
# sees the same few references in request after request.
_DECODED_REFS: dict[bytes, KeyRef] = {}


def _record(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    name, pos = _short_text(buf, pos)
    spec = _RECORDS.get(name)
    if spec is None:
        raise DecodeError("unknown record")
    size, pos = _length(buf, pos)
    end = pos + size
    body = buf[pos:end]  # a copy of this record only: nesting is shallow, cost stays linear
    if spec[0] is KeyRef:
        ref = _DECODED_REFS.get(body)
        if ref is None:
            ref = _record_body(body, depth, spec)
            if len(_DECODED_REFS) >= _REF_CACHE_MAX:
                _DECODED_REFS.clear()
            _DECODED_REFS[body] = ref
        return ref, end
    return _record_body(body, depth, spec), end


def _record_body(buf: bytes, depth: int, spec: tuple[type, tuple[tuple[str, Check], ...]]) -> Any:
    """The record whose field count and fields fill *buf* exactly."""
    cls, fields = spec
    if not buf or buf[0] != len(fields):
        raise DecodeError("wrong field count")
    pos = 1
    values = {}
    for field_name, check in fields:
        raw, pos = _value(buf, pos, depth + 1)
        values[field_name] = check(raw)
    if pos != len(buf):
        raise DecodeError("record length mismatch")
    try:
        return cls(**values)
    except Exception as exc:  # e.g. KeyRef's own invariants (InvalidArgument)
        raise DecodeError(f"invalid {cls.__name__}: {type(exc).__name__}") from None


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise DecodeError("invalid UTF-8") from None


def decode(body: bytes | bytearray | memoryview) -> Any:
    """The one value *body* holds; DecodeError for anything outside the schema."""
    buf = bytes(body)
    value, pos = _value(buf, 0, 0)
    if pos != len(buf):
        raise DecodeError("trailing bytes after the value")
    return value


class FrameDecoder:
    """Incremental decoder: feed any chunk, get the complete messages so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Complete messages so far; DecodeError for an oversized or malformed frame."""
        self._buf += data
        out: list[Any] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > MAX_FRAME:
                raise DecodeError("oversized frame")
            end = pos + _HEADER.size + length
            if len(buf) < end:
                break
            out.append(decode(memoryview(buf)[pos + _HEADER.size : end]))
            pos = end
        if pos:
            del buf[:pos]
        return out


def send_message(sock: socket.socket, message: Any) -> None:
    """Blocking send of one message (worker side)."""
    sock.sendall(encode(message))


def recv_frame(sock: socket.socket) -> bytearray | None:
    """Blocking read of one frame's payload; None on a clean EOF (parent gone)."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise DecodeError("oversized frame from parent")
    body = _recv_exact(sock, length)
    if body is None:
        return None
    return body


def recv_message(sock: socket.socket) -> Any:
    """Blocking read of one message; None on EOF."""
    body = recv_frame(sock)
    return None if body is None else decode(body)


def _recv_exact(sock: socket.socket, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return buf
