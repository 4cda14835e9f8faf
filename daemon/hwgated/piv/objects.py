"""PIV data objects (SP 800-73-4 part 1 §3.1, appendix A): parse and build.

Every parser takes the bytes GET DATA returned and raises only
:class:`~hwgated.piv.errors.PivParseError` subclasses, whatever the card sent.
Builders exist so the virtual test card and the tests make objects the same way
the parsers read them.
"""

from __future__ import annotations

import datetime
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntFlag
from typing import TypeVar

from .errors import PivParseError
from .fascn import Fascn
from .slots import Algorithm, KeyType, PinPolicy, Slot
from .tlv import Tlv, TlvError, iter_tlvs

_T = TypeVar("_T")

__all__ = [
    "MAX_CERTIFICATE_SIZE",
    "Algorithm",
    "ApplicationPropertyTemplate",
    "CertificateContainer",
    "Chuid",
    "Discovery",
    "KeyType",
    "ObjectError",
    "PinPolicy",
    "PinUsage",
    "Slot",
    "build_certificate_object",
    "parse_certificate_object",
]

TAG_DATA = 0x53
TAG_CHUID_BUFFER_LENGTH = 0xEE
TAG_FASCN = 0x30
TAG_ORG_ID = 0x32
TAG_DUNS = 0x33
TAG_GUID = 0x34
TAG_EXPIRY = 0x35
TAG_CARDHOLDER_UUID = 0x36
TAG_SIGNATURE = 0x3E
TAG_EDC = 0xFE
TAG_CERTIFICATE = 0x70
TAG_CERT_INFO = 0x71
TAG_MSCUID = 0x72
TAG_DISCOVERY = 0x7E
TAG_AID = 0x4F
TAG_PIN_USAGE_POLICY = 0x5F2F
TAG_APT = 0x61
TAG_AUTHORITY = 0x79
TAG_LABEL = 0x50
TAG_URL = 0x5F50
TAG_ALGORITHMS = 0xAC
TAG_ALGORITHM_ID = 0x80

CERT_INFO_GZIP = 0x01
CERT_INFO_GZIP_OPENSC = 0x80  # OpenSC also treats this CertInfo value as compressed
MAX_CERTIFICATE_SIZE = 16 * 1024  # bound for gunzip: a hostile card cannot balloon memory


class ObjectError(PivParseError):
    """A data object whose structure or content is wrong."""


def _unwrap(data: bytes, tag: int = TAG_DATA) -> bytes:
    """Value of the single outer TLV; TlvError is re-raised as ObjectError."""
    try:
        return Tlv.unpack(tag, data)
    except TlvError as exc:
        raise ObjectError(f"object 0x{tag:X}: {exc}") from exc


def _fields(value: bytes) -> dict[int, bytes]:
    try:
        return Tlv.parse_dict(value)
    except TlvError as exc:
        raise ObjectError(str(exc)) from exc


def _fixed(values: dict[int, bytes], tag: int, size: int) -> bytes | None:
    """Value of *tag* when present, which must be exactly *size* bytes."""
    value = values.get(tag)
    if value is not None and len(value) != size:
        raise ObjectError(f"tag 0x{tag:X} must be {size} bytes, got {len(value)}")
    return value


def _parse_expiry(value: bytes | None) -> datetime.date | None:
    if value is None:
        return None
    text = value.decode("ascii", "replace")
    if len(text) != 8 or not text.isdigit():
        raise ObjectError("expiry is not YYYYMMDD")
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise ObjectError(f"expiry {text!r} is not a date") from exc


def _uuid(value: bytes | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(bytes=value)


@dataclass(frozen=True)
class Chuid:
    """Card Holder Unique Identifier (tag 5FC102).

    ``raw`` is the object as read (``53 L …``), kept so the issuer signature
    (tag 3E, CMS over every TLV but 3E) can be verified later.

    Fields are parsed one by one: a field whose value is malformed (a
    placeholder FASC-N of 25 zero bytes, as some cards and applets ship, fails
    its parity check) is left None and named in ``unparsed`` with the reason,
    so the rest of the CHUID is not lost with it. Only a broken TLV structure
    refuses the whole object.
    """

    fascn: Fascn | None
    guid: uuid.UUID | None
    expiry: datetime.date | None
    org_id: bytes | None = None
    duns: bytes | None = None
    cardholder_uuid: uuid.UUID | None = None
    signature: bytes = b""
    raw: bytes = field(default=b"", compare=False, repr=False)
    unparsed: tuple[tuple[str, str], ...] = ()  # (field name, why it could not be parsed)

    @property
    def has_signature(self) -> bool:
        """True when 3E holds a (not yet verified) CMS signature; empty 3E means unsigned."""
        return bool(self.signature)

    @classmethod
    def parse(cls, data: bytes) -> Chuid:
        """Parse a GET DATA 5FC102 answer; raises ObjectError only for a broken
        structure (a malformed field is left None and named in ``unparsed``)."""
        values = _fields(_unwrap(data))
        unparsed: list[tuple[str, str]] = []

        def lenient(name: str, parse: Callable[[], _T]) -> _T | None:
            try:
                return parse()
            except PivParseError as exc:
                unparsed.append((name, str(exc)))
                return None

        def fascn() -> Fascn | None:
            value = _fixed(values, TAG_FASCN, 25)
            return None if value is None else Fascn.decode(value)

        return cls(
            fascn=lenient("fascn", fascn),
            guid=lenient("guid", lambda: _uuid(_fixed(values, TAG_GUID, 16))),
            expiry=lenient("expiry", lambda: _parse_expiry(values.get(TAG_EXPIRY))),
            org_id=lenient("org_id", lambda: _fixed(values, TAG_ORG_ID, 4)),
            duns=lenient("duns", lambda: _fixed(values, TAG_DUNS, 9)),
            cardholder_uuid=lenient(
                "cardholder_uuid", lambda: _uuid(_fixed(values, TAG_CARDHOLDER_UUID, 16))
            ),
            signature=values.get(TAG_SIGNATURE, b""),
            raw=bytes(data),
            unparsed=tuple(unparsed),
        )

    def encode(self) -> bytes:
        """The ``53 L …`` object in SP 800-73-4 order, ending with 3E and ``FE 00``."""
        parts = [
            (TAG_FASCN, None if self.fascn is None else self.fascn.encode()),
            (TAG_ORG_ID, self.org_id),
            (TAG_DUNS, self.duns),
            (TAG_GUID, None if self.guid is None else self.guid.bytes),
            (TAG_EXPIRY, None if self.expiry is None else self.expiry.strftime("%Y%m%d").encode()),
            (
                TAG_CARDHOLDER_UUID,
                None if self.cardholder_uuid is None else self.cardholder_uuid.bytes,
            ),
            (TAG_SIGNATURE, self.signature),
            (TAG_EDC, b""),
        ]
        body = b"".join(Tlv(tag, value) for tag, value in parts if value is not None)
        return bytes(Tlv(TAG_DATA, body))


def _gunzip(blob: bytes) -> bytes:
    """Decompress one gzip member, refusing output beyond MAX_CERTIFICATE_SIZE."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(blob, MAX_CERTIFICATE_SIZE + 1)
    except zlib.error as exc:
        raise ObjectError(f"bad gzip certificate: {exc}") from exc
    if len(out) > MAX_CERTIFICATE_SIZE:
        raise ObjectError(f"certificate inflates beyond {MAX_CERTIFICATE_SIZE} bytes")
    if not inflater.eof:
        raise ObjectError("truncated gzip certificate")
    return out


@dataclass(frozen=True)
class CertificateContainer:
    """An X.509 certificate object (5FC105, 5FC10A, 5FC10B, 5FC101, retired)."""

    certificate: bytes  # DER, already decompressed
    compressed: bool = False

    @classmethod
    def parse(cls, data: bytes) -> CertificateContainer:
        values = _fields(_unwrap(data))
        cert = values.get(TAG_CERTIFICATE)
        if not cert:
            raise ObjectError("certificate object without a certificate (tag 70)")
        info = values.get(TAG_CERT_INFO, b"\x00")
        compressed = bool(info) and (
            bool(info[0] & CERT_INFO_GZIP) or info[0] == CERT_INFO_GZIP_OPENSC
        )
        if compressed:
            cert = _gunzip(cert)
        return cls(cert, compressed)

    def encode(self) -> bytes:
        """``53{70 cert, 71 info, FE 00}``, gzip-compressing when ``compressed``."""
        cert = _gzip(self.certificate) if self.compressed else bytes(self.certificate)
        info = CERT_INFO_GZIP if self.compressed else 0x00
        body = Tlv(TAG_CERTIFICATE, cert) + Tlv(TAG_CERT_INFO, bytes([info])) + Tlv(TAG_EDC)
        return bytes(Tlv(TAG_DATA, body))


def _gzip(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


def parse_certificate_object(data: bytes) -> bytes:
    """DER certificate from a GET DATA certificate answer (gunzipped if needed)."""
    return CertificateContainer.parse(data).certificate


def build_certificate_object(der: bytes, compress: bool = False) -> bytes:
    """The certificate object for *der*, as PUT DATA would store it."""
    return CertificateContainer(der, compress).encode()


class PinUsage(IntFlag):
    """First byte of the Discovery object's PIN Usage Policy (tag 5F2F)."""

    APPLICATION_PIN = 0x40
    GLOBAL_PIN = 0x20
    OCC = 0x10
    VCI = 0x08
    VCI_WITHOUT_PAIRING_CODE = 0x04


_PIN_USAGE_MASK = 0x7C
_GLOBAL_PIN_PRIMARY = 0x20


@dataclass(frozen=True)
class Discovery:
    """Discovery object (tag 7E): which PINs the card has and which one to VERIFY."""

    aid: bytes
    pin_policy: PinUsage
    global_pin_primary: bool

    @classmethod
    def parse(cls, data: bytes) -> Discovery:
        """Parse ``7E{4F aid, 5F2F xx yy}``, also when wrapped in ``53``."""
        if data[:1] == bytes([TAG_DATA]):
            data = _unwrap(data)
        values = _fields(_unwrap(data, TAG_DISCOVERY))
        aid = values.get(TAG_AID)
        policy = _fixed(values, TAG_PIN_USAGE_POLICY, 2)
        if aid is None or policy is None:
            raise ObjectError("discovery object lacks AID or PIN usage policy")
        usage = PinUsage(policy[0] & _PIN_USAGE_MASK)
        primary = PinUsage.GLOBAL_PIN in usage and policy[1] == _GLOBAL_PIN_PRIMARY
        return cls(aid, usage, primary)

    def encode(self) -> bytes:
        """``7E{4F aid, 5F2F xx yy}`` (yy is 00 when there is no global PIN)."""
        if PinUsage.GLOBAL_PIN in self.pin_policy:
            second = _GLOBAL_PIN_PRIMARY if self.global_pin_primary else 0x10
        else:
            second = 0x00
        body = Tlv(TAG_AID, self.aid) + Tlv(
            TAG_PIN_USAGE_POLICY, bytes([int(self.pin_policy), second])
        )
        return bytes(Tlv(TAG_DISCOVERY, body))


@dataclass(frozen=True)
class ApplicationPropertyTemplate:
    """What SELECT returns (tag 61): the AID, a label, the algorithms offered."""

    aid: bytes
    label: str | None = None
    url: str | None = None
    algorithms: tuple[int, ...] = ()
    authority_aid: bytes | None = None

    @classmethod
    def parse(cls, data: bytes) -> ApplicationPropertyTemplate:
        values = _fields(_unwrap(data, TAG_APT))
        aid = values.get(TAG_AID)
        if aid is None:
            raise ObjectError("application property template without AID (4F)")
        authority = values.get(TAG_AUTHORITY)
        return cls(
            aid=aid,
            label=_text(values.get(TAG_LABEL)),
            url=_text(values.get(TAG_URL)),
            algorithms=_algorithms(values.get(TAG_ALGORITHMS)),
            authority_aid=None if authority is None else _fields(authority).get(TAG_AID),
        )

    def encode(self) -> bytes:
        body = bytes(Tlv(TAG_AID, self.aid))
        if self.authority_aid is not None:
            body += Tlv(TAG_AUTHORITY, Tlv(TAG_AID, self.authority_aid))
        if self.label is not None:
            body += Tlv(TAG_LABEL, self.label.encode())
        if self.url is not None:
            body += Tlv(TAG_URL, self.url.encode())
        if self.algorithms:
            algs = b"".join(Tlv(TAG_ALGORITHM_ID, bytes([a])) for a in self.algorithms)
            body += Tlv(TAG_ALGORITHMS, algs + Tlv(0x06, b"\x00"))
        return bytes(Tlv(TAG_APT, body))


def _text(value: bytes | None) -> str | None:
    """Labels are informative only: undecodable bytes are replaced, not refused."""
    return None if value is None else value.decode("utf-8", "replace")


def _algorithms(value: bytes | None) -> tuple[int, ...]:
    if value is None:
        return ()
    try:
        items = list(iter_tlvs(value))
    except TlvError as exc:
        raise ObjectError(str(exc)) from exc
    return tuple(t.value[0] for t in items if t.tag == TAG_ALGORITHM_ID and t.length == 1)
