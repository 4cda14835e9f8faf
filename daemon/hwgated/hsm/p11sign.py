"""Signing with a found key: one SignAlgorithm -> one PKCS#11 call per digest.

Runs inside a worker. SoftHSM (and many HSMs) offer only raw CKM_ECDSA and
CKM_RSA_PKCS over precomputed input, which is exactly what a digest-in API needs:
ECDSA signs the (truncated) digest and returns raw r||s, which is DER-encoded
here; PKCS#1 v1.5 signs DigestInfo(prefix || digest); PSS passes the hash in the
mechanism parameters and signs the digest itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pkcs11 import MGF, Mechanism

from hwgated.hsm.algorithms import DIGEST_INFO_PREFIX, algorithm_spec, truncate_for_curve
from hwgated.hsm.errors import AlgorithmMismatch, KeyUsageNotAllowed
from hwgated.hsm.p11keys import FoundKey
from hwgated.hsm.types import KeyAlgorithm, KeyUsage, SignAlgorithm

Signer = Callable[[bytes], bytes]
# Gives the token's user PIN for a CKA_ALWAYS_AUTHENTICATE key, or raises (see make_signer).
ContextPin = Callable[[], str]

_PSS_PARAMS = {
    "sha256": (Mechanism.SHA256, MGF.SHA256, 32),
    "sha384": (Mechanism.SHA384, MGF.SHA384, 48),
    "sha512": (Mechanism.SHA512, MGF.SHA512, 64),
}
_HMAC_KEY_TYPES = (KeyAlgorithm.GENERIC_SECRET, KeyAlgorithm.OTHER)


def make_signer(
    key: FoundKey, algorithm: SignAlgorithm, context_pin: ContextPin | None = None
) -> Signer:
    """A function signing one input with ``key``; AlgorithmMismatch if the key's type
    cannot, KeyUsageNotAllowed if its CKA_SIGN is not set.

    A CKA_ALWAYS_AUTHENTICATE key (PIV-style signing keys, many HSMs' CA keys) wants
    the PIN again for every operation: python-pkcs11 does C_SignInit, then
    C_Login(CKU_CONTEXT_SPECIFIC) with ``context_pin()``, then C_Sign."""
    signer = _signer(key, algorithm, _ContextLogin(key, context_pin))
    key.require(KeyUsage.SIGN)
    return signer


class _ContextLogin:
    """What to pass to python-pkcs11's sign(): nothing, or ``pin=`` for a key that
    needs a context-specific login (KeyUsageNotAllowed when no PIN can be given)."""

    def __init__(self, key: FoundKey, context_pin: ContextPin | None) -> None:
        self._key = key
        self._pin = context_pin

    def sign(self, obj: Any, data: bytes, **kw: Any) -> bytes:
        if self._key.always_authenticate:
            if self._pin is None:
                raise KeyUsageNotAllowed(
                    f"key {self._key.label!r} needs a context-specific login "
                    "(CKA_ALWAYS_AUTHENTICATE) and this token's PIN is not available",
                    key=self._key.label,
                    usage=KeyUsage.SIGN.value,
                )
            kw["pin"] = self._pin()
        return bytes(obj.sign(data, **kw))


def _signer(key: FoundKey, algorithm: SignAlgorithm, login: _ContextLogin) -> Signer:
    spec = algorithm_spec(algorithm)
    obj = key.obj
    if algorithm is SignAlgorithm.HMAC_SHA256:
        _require(key, algorithm, key.key_type in _HMAC_KEY_TYPES)
        return lambda data: login.sign(obj, data, mechanism=Mechanism.SHA256_HMAC)
    _require(key, algorithm, key.key_type is spec.key_type)
    if spec.key_type is KeyAlgorithm.EC:
        if key.curve is None:
            raise AlgorithmMismatch("EC key on a curve this gateway does not support")
        bits = key.curve.bits

        def ecdsa(digest: bytes) -> bytes:
            raw = login.sign(obj, truncate_for_curve(digest, bits), mechanism=Mechanism.ECDSA)
            return der_ecdsa_signature(raw)

        return ecdsa
    if algorithm.value.startswith("RSA_PSS_"):
        params = _PSS_PARAMS[spec.hash_name]
        return lambda digest: login.sign(
            obj, digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=params
        )
    prefix = DIGEST_INFO_PREFIX[spec.hash_name]
    return lambda digest: login.sign(obj, prefix + digest, mechanism=Mechanism.RSA_PKCS)


def _require(key: FoundKey, algorithm: SignAlgorithm, ok: bool) -> None:
    if not ok:
        raise AlgorithmMismatch(f"{algorithm.value} needs another key type than {key.key_type}")


def der_ecdsa_signature(raw: bytes) -> bytes:
    """PKCS#11 r||s (two equal halves) -> DER SEQUENCE { INTEGER r, INTEGER s }.

    Written out instead of pkcs11.util.ec.encode_ecdsa_signature because it runs
    once per signature on the hot path and the asn1crypto round trip is slower.
    """
    half = len(raw) // 2
    body = _der_integer(raw[:half]) + _der_integer(raw[half:])
    return b"\x30" + _der_length(len(body)) + body


def _der_integer(value: bytes) -> bytes:
    value = value.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + _der_length(len(value)) + value


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    return bytes((0x82, n >> 8, n & 0xFF))
