"""The private-key operations behind GENERAL AUTHENTICATE, as a real PIV card does them.

RSA is raw (the host pads), ECDSA signs a hash computed off card, ECDH returns
the shared x-coordinate. Bad input raises :class:`KeyOpError`, which the applet
answers with 6A80.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .profile import PrivateKey

ALG_RSA_2048 = 0x07
ALG_ECC_P256 = 0x11
ALG_ECC_P384 = 0x14

_CURVES: dict[str, tuple[int, type[hashes.HashAlgorithm]]] = {
    "secp256r1": (ALG_ECC_P256, hashes.SHA256),
    "secp384r1": (ALG_ECC_P384, hashes.SHA384),
}


class KeyOpError(ValueError):
    """Input the key operation cannot use (wrong size, not on the curve, ...)."""


def algorithm_of(key: PrivateKey) -> int:
    """The SP 800-78-4 algorithm id a GENERAL AUTHENTICATE for *key* must name."""
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048:
        return ALG_RSA_2048
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name][0]
    raise KeyOpError("key type not supported by the virtual card")


def sign(key: PrivateKey, data: bytes) -> bytes:
    """RSA: raw private operation on one modulus-sized block. ECC: DER ECDSA over a hash."""
    if isinstance(key, rsa.RSAPrivateKey):
        return _raw_rsa(key, data)
    return _ecdsa(key, data)


def _raw_rsa(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    size = key.key_size // 8
    if len(block) != size:
        raise KeyOpError(f"RSA input must be {size} bytes, got {len(block)}")
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    m = int.from_bytes(block, "big")
    if m >= n:
        raise KeyOpError("RSA input not below the modulus")
    return pow(m, numbers.d, n).to_bytes(size, "big")


def _ecdsa(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    if not digest:
        raise KeyOpError("empty hash")
    # FIPS 186-4 §6.4: use the leftmost field-size bytes; a shorter hash is the same
    # integer left-padded with zeros.
    size = _field_bytes(key)
    digest = digest[:size].rjust(size, b"\x00")
    return key.sign(digest, ec.ECDSA(Prehashed(_CURVES[key.curve.name][1]())))


def _field_bytes(key: ec.EllipticCurvePrivateKey) -> int:
    return (key.curve.key_size + 7) // 8


def ecdh(key: PrivateKey, peer_point: bytes) -> bytes:
    """Shared secret Z (x-coordinate) with an uncompressed peer point ``04||X||Y``."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyOpError("ECDH needs an EC key")
    if len(peer_point) != 1 + 2 * _field_bytes(key) or peer_point[0] != 0x04:
        raise KeyOpError("peer point must be an uncompressed point on the key's curve")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, peer_point)
        return key.exchange(ec.ECDH(), peer)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyOpError("peer point not on the curve") from exc
