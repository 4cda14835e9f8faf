"""Finding key objects in a worker's session, describing them, exporting public keys.

Runs only inside a worker process (imports pkcs11). Lookups are cached per
worker because a search is three PKCS#11 calls and signing is one: the cache
is dropped when this worker creates or deletes objects and when the pool tells
it another worker did; a stale handle that slips through (a request queued
before that notice) is caught by the caller, which drops the cache and retries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, ObjectClass

from hwgated.hsm.errors import InvalidArgument, KeyNotFound, KeyUsageNotAllowed
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.types import KeyAlgorithm, KeyInfo, KeyUsage


@dataclass(frozen=True)
class Curve:
    """A named curve: its name, field size and cryptography's curve object."""

    name: str
    bits: int
    params_der: bytes
    crypto: ec.EllipticCurve

    @property
    def point_len(self) -> int:
        """Length of an uncompressed point 04||X||Y."""
        return 1 + 2 * ((self.bits + 7) // 8)


CURVES: tuple[Curve, ...] = (
    Curve("P-256", 256, bytes.fromhex("06082a8648ce3d030107"), ec.SECP256R1()),
    Curve("P-384", 384, bytes.fromhex("06052b81040022"), ec.SECP384R1()),
    Curve("P-521", 521, bytes.fromhex("06052b81040023"), ec.SECP521R1()),
)
_CURVE_BY_PARAMS = {c.params_der: c for c in CURVES}

CLASS_TO_P11 = {
    KeyClass.PRIVATE: ObjectClass.PRIVATE_KEY,
    KeyClass.PUBLIC: ObjectClass.PUBLIC_KEY,
    KeyClass.SECRET: ObjectClass.SECRET_KEY,
    KeyClass.CERTIFICATE: ObjectClass.CERTIFICATE,
    KeyClass.DATA: ObjectClass.DATA,
}
P11_TO_CLASS = {v: k for k, v in CLASS_TO_P11.items()}
_KEY_TYPES = {
    KeyType.RSA: KeyAlgorithm.RSA,
    KeyType.EC: KeyAlgorithm.EC,
    KeyType.AES: KeyAlgorithm.AES,
    KeyType.GENERIC_SECRET: KeyAlgorithm.GENERIC_SECRET,
}
_USAGE_ATTRS = {
    Attribute.SIGN: KeyUsage.SIGN,
    Attribute.VERIFY: KeyUsage.VERIFY,
    Attribute.DERIVE: KeyUsage.DERIVE,
    Attribute.ENCRYPT: KeyUsage.ENCRYPT,
    Attribute.DECRYPT: KeyUsage.DECRYPT,
    Attribute.WRAP: KeyUsage.WRAP,
    Attribute.UNWRAP: KeyUsage.UNWRAP,
}
_INFO_ATTRS = [
    Attribute.LABEL,
    Attribute.ID,
    Attribute.KEY_TYPE,
    Attribute.TOKEN,
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.LOCAL,
    Attribute.MODULUS_BITS,
    Attribute.MODULUS,
    Attribute.EC_PARAMS,
    Attribute.VALUE_LEN,
    *_USAGE_ATTRS,
]


@dataclass(frozen=True)
class FoundKey:
    """A key object with what the operations need to know about it."""

    obj: Any  # a pkcs11 Key; typed Any because python-pkcs11 mixes in capabilities
    key_type: KeyAlgorithm
    curve: Curve | None
    label: str = ""
    # The usage flags the token reports as set (CKA_SIGN, CKA_DERIVE, ...).
    usages: frozenset[KeyUsage] = frozenset()
    # CKA_ALWAYS_AUTHENTICATE: each operation needs C_Login(CKU_CONTEXT_SPECIFIC)
    # between its C_*Init and the operation itself.
    always_authenticate: bool = False

    def require(self, usage: KeyUsage) -> None:
        """KeyUsageNotAllowed unless the key may be used for ``usage``: checked here so
        the module is never asked (python-pkcs11 only gives a key the methods its flags
        allow, so asking anyway ends in an AttributeError, not a PKCS#11 error)."""
        if usage not in self.usages:
            raise KeyUsageNotAllowed(
                f"key {self.label!r} does not allow {usage.value} (CKA_{usage.name} is not set)",
                key=self.label,
                usage=usage.value,
            )


def curve_from_params(params: bytes | None) -> Curve | None:
    """The Curve for a CKA_EC_PARAMS value, None for curves this layer does not know."""
    return None if params is None else _CURVE_BY_PARAMS.get(bytes(params))


def key_algorithm(p11_type: Any) -> KeyAlgorithm:
    """Map CKA_KEY_TYPE to KeyAlgorithm (OTHER for the rest)."""
    return _KEY_TYPES.get(p11_type, KeyAlgorithm.OTHER)


class KeyStore:
    """Cached lookups of key objects in one session."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._cache: dict[tuple[Any, ...], FoundKey] = {}

    def invalidate(self) -> None:
        """Forget every cached handle (objects were created or destroyed)."""
        self._cache.clear()

    def find(self, ref: KeyRef, classes: tuple[KeyClass, ...]) -> FoundKey:
        """The single key matching ``ref`` among ``classes`` (searched in order)."""
        cache_key = (ref.label, ref.id, ref.key_class, classes)
        found = self._cache.get(cache_key)
        if found is None:
            found = self._lookup(ref, classes)
            self._cache[cache_key] = found
        return found

    def _lookup(self, ref: KeyRef, classes: tuple[KeyClass, ...]) -> FoundKey:
        wanted = classes if ref.key_class is None else (ref.key_class,)
        for key_class in wanted:
            if key_class not in classes:
                break
            matches = self.search(ref, key_class)
            if len(matches) > 1:
                raise InvalidArgument(f"key reference {ref} matches {len(matches)} objects")
            if matches:
                return describe_for_use(matches[0])
        kinds = "/".join(c.value for c in classes)
        raise KeyNotFound(f"no {kinds} key matches {ref}")

    def search(self, ref: KeyRef, key_class: KeyClass | None = None) -> list[Any]:
        """Every object matching the reference's label/id (and class, when given)."""
        attrs: dict[Attribute, Any] = {}
        if ref.label is not None:
            attrs[Attribute.LABEL] = ref.label
        if ref.id is not None:
            attrs[Attribute.ID] = ref.id
        key_class = key_class or ref.key_class
        if key_class is not None:
            attrs[Attribute.CLASS] = CLASS_TO_P11[key_class]
        return list(self._session.get_objects(attrs))

    def label_taken(self, label: str) -> bool:
        """True when any object on the token already has this label."""
        return any(True for _ in self._session.get_objects({Attribute.LABEL: label}))

    def all_keys(self) -> Iterable[Any]:
        """Private, secret and public key objects, in that order."""
        for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY):
            yield from self._session.get_objects({Attribute.CLASS: cls})


def describe_for_use(obj: Any) -> FoundKey:
    """Read the key type (and curve) once, when the key enters the cache."""
    # One C_GetAttributeValue round: python-pkcs11 leaves out what the module cannot give.
    attrs = obj.get_attributes(
        [
            Attribute.KEY_TYPE,
            Attribute.EC_PARAMS,
            Attribute.LABEL,
            Attribute.ALWAYS_AUTHENTICATE,
            *_USAGE_ATTRS,
        ]
    )
    key_type = key_algorithm(attrs.get(Attribute.KEY_TYPE))
    curve = None
    if key_type is KeyAlgorithm.EC:
        curve = curve_from_params(attrs.get(Attribute.EC_PARAMS))
    return FoundKey(
        obj=obj,
        key_type=key_type,
        curve=curve,
        label=attrs.get(Attribute.LABEL) or "",
        usages=usages_of(attrs),
        always_authenticate=bool(attrs.get(Attribute.ALWAYS_AUTHENTICATE)),
    )


def usages_of(attrs: dict[Attribute, Any]) -> frozenset[KeyUsage]:
    """The usage flags an attribute read reports as set."""
    return frozenset(u for a, u in _USAGE_ATTRS.items() if attrs.get(a))


def key_info(obj: Any) -> KeyInfo:
    """Describe one key object without reading any secret attribute."""
    attrs = obj.get_attributes(_INFO_ATTRS)
    key_type = key_algorithm(attrs.get(Attribute.KEY_TYPE))
    key_class = P11_TO_CLASS[obj.object_class]
    curve = curve_from_params(attrs.get(Attribute.EC_PARAMS))
    return KeyInfo(
        label=attrs.get(Attribute.LABEL) or "",
        id_hex=bytes(attrs.get(Attribute.ID) or b"").hex(),
        key_class=key_class,
        key_type=key_type,
        size_bits=_size_bits(key_type, attrs, curve),
        curve=curve.name if curve else None,
        usages=usages_of(attrs),
        sensitive=_flag(attrs, Attribute.SENSITIVE, key_class),
        extractable=_flag(attrs, Attribute.EXTRACTABLE, key_class),
        local=attrs.get(Attribute.LOCAL),
        token_object=bool(attrs.get(Attribute.TOKEN, True)),
    )


def _flag(attrs: dict[Attribute, Any], attr: Attribute, key_class: KeyClass) -> bool | None:
    if key_class is KeyClass.PUBLIC:
        return None
    value = attrs.get(attr)
    return None if value is None else bool(value)


def _size_bits(
    key_type: KeyAlgorithm, attrs: dict[Attribute, Any], curve: Curve | None
) -> int | None:
    if key_type is KeyAlgorithm.RSA:
        if attrs.get(Attribute.MODULUS_BITS):
            return int(attrs[Attribute.MODULUS_BITS])
        modulus = attrs.get(Attribute.MODULUS)
        return len(modulus) * 8 if modulus else None
    if key_type is KeyAlgorithm.EC:
        return curve.bits if curve else None
    value_len = attrs.get(Attribute.VALUE_LEN)
    return int(value_len) * 8 if value_len else None


def public_key_der(store: KeyStore, ref: KeyRef) -> bytes:
    """DER SubjectPublicKeyInfo of the key: from its public object, or an RSA private key."""
    try:
        found = store.find(ref, (KeyClass.PUBLIC,))
    except KeyNotFound:
        found = store.find(ref, (KeyClass.PRIVATE,))
    if found.key_type is KeyAlgorithm.RSA:
        attrs = found.obj.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(attrs[Attribute.MODULUS], "big"),
        )
        return _spki(numbers.public_key())
    if found.key_type is KeyAlgorithm.EC:
        if found.curve is None:
            raise InvalidArgument(f"key {ref} is on a curve this gateway does not support")
        try:
            point = found.obj[Attribute.EC_POINT]
        except pkcs11.exceptions.AttributeTypeInvalid:
            raise KeyNotFound(f"no public EC key object for {ref}") from None
        point = unwrap_ec_point(bytes(point), found.curve)
        return _spki(ec.EllipticCurvePublicKey.from_encoded_point(found.curve.crypto, point))
    raise InvalidArgument(f"key {ref} is not an asymmetric key")


def unwrap_ec_point(value: bytes, curve: Curve) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around 04||X||Y (some modules store it raw)."""
    if len(value) == curve.point_len and value[0] == 0x04:
        return value
    if len(value) >= 2 and value[0] == 0x04:
        header = 2 if value[1] < 0x80 else 2 + (value[1] & 0x7F)
        inner = value[header:]
        if len(inner) == curve.point_len:
            return inner
    raise InvalidArgument("EC point attribute is malformed")


def _spki(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
