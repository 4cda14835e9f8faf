"""The card's own BER-TLV codec (ISO/IEC 7816-4 §5.2, SP 800-73-4 part 2 §3.1).

Written for the virtual card alone, deliberately apart from the daemon's parser:
the card exists to test that parser, so sharing the code would let one bug on
both sides cancel out. The card encodes its data objects and decodes the few
templates a host sends it (the 5C tag list of GET DATA, the 7C dynamic
authentication template).

Rules, from the spec rather than from any other implementation:

- Tag: one byte, unless its low five bits are all ones; then more bytes follow,
  each with b8 set except the last. PIV tags have at most three bytes (5FC1xx).
- Length: ``00``-``7F`` in one byte; otherwise ``8n`` followed by *n* big-endian
  bytes. The card writes the shortest form (``81 xx`` from 128, ``82 xx xx`` from
  256) and reads ``81``-``83``; ``80`` (indefinite) and ``84``+ are refused.
- Every value must lie inside the buffer it came in; bad input raises
  :class:`BerError` and nothing else.
"""

from __future__ import annotations

MAX_TAG_BYTES = 3
MAX_LENGTH_BYTES = 3

_MULTI_BYTE_TAG = 0x1F  # low five bits of a first tag byte announcing more bytes
_MORE_TAG_BYTES = 0x80  # b8 of a subsequent tag byte: another one follows
_LONG_LENGTH = 0x80  # b8 of the first length byte: long form


class BerError(ValueError):
    """Input that is not a BER-TLV data object the card accepts."""


def tag_bytes(tag: int) -> bytes:
    """The encoding of *tag* (an int such as 0x5FC102), checked to be a valid tag."""
    if tag < 0 or tag >= 1 << (8 * MAX_TAG_BYTES):
        raise BerError(f"tag {tag:#x} out of range")
    size = 1 if tag <= 0xFF else (tag.bit_length() + 7) // 8
    raw = tag.to_bytes(size, "big")
    multi = raw[0] & _MULTI_BYTE_TAG == _MULTI_BYTE_TAG
    if multi != (size > 1):
        raise BerError(f"tag {tag:#x}: first byte and tag size disagree")
    for i, byte in enumerate(raw[1:], start=1):
        last = i == size - 1
        if bool(byte & _MORE_TAG_BYTES) == last:
            raise BerError(f"tag {tag:#x}: continuation bit wrong in byte {i}")
    return raw


def length_bytes(length: int) -> bytes:
    """Shortest definite-form length field for *length*."""
    if length < 0:
        raise BerError(f"negative length {length}")
    if length < _LONG_LENGTH:
        return bytes([length])
    count = (length.bit_length() + 7) // 8
    if count > MAX_LENGTH_BYTES:
        raise BerError(f"length {length} needs more than {MAX_LENGTH_BYTES} bytes")
    return bytes([_LONG_LENGTH | count]) + length.to_bytes(count, "big")


def tlv(tag: int, value: bytes = b"") -> bytes:
    """One data object: tag, length, value. ``tlv(0xFE)`` is the empty ``FE 00``."""
    return tag_bytes(tag) + length_bytes(len(value)) + bytes(value)


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Decode the data object starting at *pos*: ``(tag, value, position after it)``."""
    data = bytes(data)
    tag, pos = _read_tag(data, pos)
    length, pos = _read_length(data, pos)
    end = pos + length
    if end > len(data):
        raise BerError(f"tag {tag:#x}: value of {length} bytes runs past the data")
    return tag, data[pos:end], end


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise BerError("no tag")
    tag = data[pos]
    pos += 1
    if tag & _MULTI_BYTE_TAG != _MULTI_BYTE_TAG:
        return tag, pos
    for _ in range(MAX_TAG_BYTES - 1):
        if pos >= len(data):
            raise BerError("tag cut short")
        byte = data[pos]
        tag = tag << 8 | byte
        pos += 1
        if not byte & _MORE_TAG_BYTES:
            return tag, pos
    raise BerError(f"tag longer than {MAX_TAG_BYTES} bytes")


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise BerError("no length")
    first = data[pos]
    pos += 1
    if not first & _LONG_LENGTH:
        return first, pos
    count = first & ~_LONG_LENGTH
    if not 1 <= count <= MAX_LENGTH_BYTES:
        raise BerError(f"length form {first:#04x} not accepted")
    if pos + count > len(data):
        raise BerError("length cut short")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def decode_all(data: bytes) -> list[tuple[int, bytes]]:
    """Every data object of a concatenation, in order, as ``(tag, value)``."""
    out = []
    pos = 0
    while pos < len(data):
        tag, value, pos = read_tlv(data, pos)
        out.append((tag, value))
    return out


def decode_template(data: bytes) -> dict[int, bytes]:
    """Tag → value of a flat template; the first of a repeated tag wins."""
    out: dict[int, bytes] = {}
    for tag, value in decode_all(data):
        out.setdefault(tag, value)
    return out


def unwrap(tag: int, data: bytes) -> bytes:
    """The value of *data*, which must be exactly one data object with *tag*."""
    found, value, end = read_tlv(data)
    if found != tag:
        raise BerError(f"expected tag {tag:#x}, found {found:#x}")
    if end != len(data):
        raise BerError(f"{len(data) - end} bytes after tag {tag:#x}")
    return value
