"""BER-TLV as used by the PIV card edge (SP 800-73-4 part 2, ISO/IEC 7816-4).

A ``Tlv`` is ``bytes`` (its full encoding) with ``tag`` and ``value`` views, so a
command reads like the spec: ``Tlv(0x7C, Tlv(0x82) + Tlv(0x81, challenge))``.
Parsing is strict: every length must fit inside the buffer it came in, and the
only exception that escapes on bad input is :class:`TlvError`.
"""

from __future__ import annotations

from collections.abc import Iterator

from .errors import PivParseError


class TlvError(PivParseError):
    """Bytes that are not well-formed BER-TLV (truncated, bad length, bad tag)."""


_MAX_TAG_BYTES = 3  # PIV uses at most 3-byte tags (5FC1xx); longer is malformed here.


def _encode_tag(tag: int) -> bytes:
    if tag < 0:
        raise TlvError(f"negative tag {tag}")
    encoded = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    # Refuse ints that would not parse back as exactly this tag (e.g. 0x1F, 0x5F01FF).
    parsed, end = _read_tag(encoded, 0)
    if parsed != tag or end != len(encoded):
        raise TlvError(f"0x{tag:X} is not a valid BER tag")
    return encoded


def encode_length(length: int) -> bytes:
    """DER-style definite length: short form below 0x80, else 81 xx / 82 xx xx / 83 ..."""
    if length < 0:
        raise TlvError(f"negative length {length}")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > 3:
        raise TlvError(f"length {length} too large")
    return bytes([0x80 | len(body)]) + body


def _read_tag(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    end = len(data)
    if offset >= end:
        raise TlvError("missing tag")
    first = data[offset]
    tag = first
    offset += 1
    if first & 0x1F == 0x1F:  # multi-byte tag: subsequent bytes while b8 is set
        count = 1
        while True:
            if offset >= end:
                raise TlvError("truncated multi-byte tag")
            b = data[offset]
            tag = (tag << 8) | b
            offset += 1
            count += 1
            if count > _MAX_TAG_BYTES:
                raise TlvError("tag longer than 3 bytes")
            if not b & 0x80:
                break
    return tag, offset


def _read_length(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    end = len(data)
    if offset >= end:
        raise TlvError("missing length")
    first = data[offset]
    offset += 1
    if first < 0x80:
        return first, offset
    count = first & 0x7F
    if count == 0 or count > 3:
        raise TlvError(f"unsupported length form 0x{first:02X}")
    if offset + count > end:
        raise TlvError("truncated length")
    length = int.from_bytes(bytes(data[offset : offset + count]), "big")
    return length, offset + count


def read_header(data: bytes | memoryview, offset: int = 0) -> tuple[int, int, int]:
    """Return ``(tag, value_offset, value_end)`` of the TLV at *offset*, bounds-checked."""
    tag, offset = _read_tag(data, offset)
    length, offset = _read_length(data, offset)
    end = offset + length
    if end > len(data):
        raise TlvError(f"tag 0x{tag:X}: length {length} overruns buffer")
    return tag, offset, end


class Tlv(bytes):
    """One BER-TLV element; the object *is* its encoding."""

    _tag: int
    _value_offset: int

    def __new__(cls, tag_or_data: int | bytes, value: bytes = b"") -> Tlv:
        if isinstance(tag_or_data, int):
            encoded = _encode_tag(tag_or_data) + encode_length(len(value)) + bytes(value)
        else:
            encoded = bytes(tag_or_data)
            tag, start, end = read_header(encoded)
            if end != len(encoded):
                raise TlvError(f"{len(encoded) - end} trailing bytes after tag 0x{tag:X}")
        obj = super().__new__(cls, encoded)
        tag, start, _ = read_header(obj)
        obj._tag = tag
        obj._value_offset = start
        return obj

    @property
    def tag(self) -> int:
        return self._tag

    @property
    def value(self) -> bytes:
        return bytes(self[self._value_offset :])

    @property
    def length(self) -> int:
        return len(self) - self._value_offset

    def __repr__(self) -> str:
        return f"Tlv(tag=0x{self._tag:X}, length={self.length})"

    @classmethod
    def parse_list(cls, data: bytes) -> list[Tlv]:
        """Split a concatenation of TLVs; raises TlvError on any malformation."""
        return list(iter_tlvs(data))

    @classmethod
    def parse_dict(cls, data: bytes) -> dict[int, bytes]:
        """Tag → value for a flat template (a repeated tag keeps its first value)."""
        out: dict[int, bytes] = {}
        for tlv in iter_tlvs(data):
            out.setdefault(tlv.tag, tlv.value)
        return out

    @classmethod
    def unpack(cls, tag: int, data: bytes) -> bytes:
        """Value of *data*, which must be exactly one TLV with *tag*."""
        tlv = cls(data)
        if tlv.tag != tag:
            raise TlvError(f"expected tag 0x{tag:X}, got 0x{tlv.tag:X}")
        return tlv.value


def iter_tlvs(data: bytes) -> Iterator[Tlv]:
    """Yield each TLV in *data* in order, strictly bounds-checked."""
    data = bytes(data)
    offset = 0
    while offset < len(data):
        _, _, end = read_header(data, offset)
        yield Tlv(data[offset:end])
        offset = end
