"""Host-side signature encodings for keys that only do raw RSA / raw ECDSA.

A PIV card signs exactly the block it is given (SP 800-78-4): for RSA the host
pads to the modulus length (PKCS#1 v1.5 or PSS, RFC 8017), for ECDSA the host
cuts the hash to the field size (FIPS 186-4 §6.4). Only digests come in: the
message never reaches the daemon.
"""

from __future__ import annotations

import hashlib
import os

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1).
_DIGEST_INFO: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_DIGEST_SIZE = {"sha256": 32, "sha384": 48, "sha512": 64}
_PKCS1_MIN_PADDING = 8
MIN_CHALLENGE_LENGTH = 32


def _hash_name(hash_name: str) -> str:
    """Normalize "SHA-256", "sha256", ... and check the digest algorithm is supported."""
    name = hash_name.lower().replace("-", "").replace("_", "")
    if name not in _DIGEST_SIZE:
        raise ValueError(f"unsupported hash {hash_name!r}")
    return name


def _check_digest(digest: bytes, name: str) -> None:
    if len(digest) != _DIGEST_SIZE[name]:
        raise ValueError(f"{name} digest must be {_DIGEST_SIZE[name]} bytes, got {len(digest)}")


def pkcs1v15_block(digest: bytes, hash_name: str, key_bytes: int) -> bytes:
    """EMSA-PKCS1-v1_5: ``00 01 FF…FF 00 DigestInfo`` of *key_bytes* (modulus length)."""
    name = _hash_name(hash_name)
    _check_digest(digest, name)
    info = _DIGEST_INFO[name] + digest
    padding = key_bytes - len(info) - 3
    if padding < _PKCS1_MIN_PADDING:
        raise ValueError("key too small for this digest")
    return b"\x00\x01" + b"\xff" * padding + b"\x00" + info


def _mgf1(seed: bytes, length: int, name: str) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.new(name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def pss_block(
    digest: bytes,
    hash_name: str,
    key_bits: int,
    salt_len: int | None = None,
    *,
    salt: bytes | None = None,
) -> bytes:
    """EMSA-PSS-ENCODE (MGF1 with the same hash), left-padded to the modulus length.

    The salt is random and as long as the hash unless *salt_len* says otherwise;
    *salt* fixes it (known-answer tests only).
    """
    name = _hash_name(hash_name)
    _check_digest(digest, name)
    h_len = len(digest)
    if salt is None:
        salt = os.urandom(h_len if salt_len is None else salt_len)
    em_bits = key_bits - 1
    em_len = (em_bits + 7) // 8
    if em_len < h_len + len(salt) + 2:
        raise ValueError("key too small for this digest and salt")
    h = hashlib.new(name, b"\x00" * 8 + digest + salt).digest()
    db = b"\x00" * (em_len - len(salt) - h_len - 2) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1(h, len(db), name), strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    em = bytes(masked) + h + b"\xbc"
    return em.rjust((key_bits + 7) // 8, b"\x00")


def ecdsa_input(digest: bytes, curve_bits: int) -> bytes:
    """The hash as the card wants it: leftmost field-size bytes, or left-padded with 00."""
    if curve_bits % 8:
        raise ValueError("only byte-aligned curves (P-256, P-384) are supported")
    size = curve_bits // 8
    if not digest:
        raise ValueError("empty digest")
    return digest[:size].rjust(size, b"\x00")


def origin_bound_digest(origin: str, challenge: bytes) -> bytes:
    """SHA-256(SHA-256(origin) ‖ SHA-256(challenge)), as Web eID signs for authentication.

    Binding the origin stops a relying party from relaying another site's challenge;
    a challenge under 32 bytes is refused because it cannot be a fresh nonce.
    """
    if len(challenge) < MIN_CHALLENGE_LENGTH:
        raise ValueError(f"challenge must be at least {MIN_CHALLENGE_LENGTH} bytes")
    origin_hash = hashlib.sha256(origin.encode("utf-8")).digest()
    return hashlib.sha256(origin_hash + hashlib.sha256(challenge).digest()).digest()
