"""Host-side encodings, checked by `cryptography` verifying raw-RSA'd blocks."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hwgated.piv.signing import ecdsa_input, origin_bound_digest, pkcs1v15_block, pss_block

HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _raw_rsa(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    """What the card does: block^d mod n, no padding."""
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    assert int.from_bytes(block, "big") < n
    return pow(int.from_bytes(block, "big"), numbers.d, n).to_bytes(256, "big")


@pytest.mark.parametrize("name", sorted(HASHES))
def test_pkcs1v15_verifies(rsa_key: rsa.RSAPrivateKey, name: str) -> None:
    digest = hashlib.new(name, b"message").digest()
    block = pkcs1v15_block(digest, name, 256)
    assert len(block) == 256 and block[:2] == b"\x00\x01"
    signature = _raw_rsa(rsa_key, block)
    rsa_key.public_key().verify(signature, digest, padding.PKCS1v15(), Prehashed(HASHES[name]))
    with pytest.raises(InvalidSignature):
        other = hashlib.new(name, b"other").digest()
        rsa_key.public_key().verify(signature, other, padding.PKCS1v15(), Prehashed(HASHES[name]))


@pytest.mark.parametrize("name", sorted(HASHES))
def test_pss_verifies(rsa_key: rsa.RSAPrivateKey, name: str) -> None:
    digest = hashlib.new(name, b"message").digest()
    block = pss_block(digest, name, 2048)
    assert len(block) == 256
    signature = _raw_rsa(rsa_key, block)
    pss = padding.PSS(mgf=padding.MGF1(HASHES[name]), salt_length=len(digest))
    rsa_key.public_key().verify(signature, digest, pss, Prehashed(HASHES[name]))


def test_pss_salt_is_random_and_configurable(rsa_key: rsa.RSAPrivateKey) -> None:
    digest = hashlib.sha256(b"m").digest()
    assert pss_block(digest, "SHA-256", 2048) != pss_block(digest, "SHA-256", 2048)
    block = pss_block(digest, "sha256", 2048, salt_len=0)
    assert block == pss_block(digest, "sha256", 2048, salt_len=0)  # no salt: deterministic
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=0)
    rsa_key.public_key().verify(_raw_rsa(rsa_key, block), digest, pss, Prehashed(hashes.SHA256()))


def test_pss_odd_modulus_bits() -> None:
    # emBits = 1024 for a 1025-bit key: the block is one byte longer, leading 00.
    block = pss_block(hashlib.sha256(b"m").digest(), "sha256", 1025)
    assert len(block) == 129 and block[0] == 0 and block[-1] == 0xBC


@pytest.mark.parametrize(
    ("digest", "name", "size"),
    [(b"\x00" * 31, "sha256", 256), (b"\x00" * 32, "md5", 256), (b"\x00" * 64, "sha512", 64)],
)
def test_pkcs1v15_rejects(digest: bytes, name: str, size: int) -> None:
    with pytest.raises(ValueError):
        pkcs1v15_block(digest, name, size)


def test_pss_rejects_small_key() -> None:
    with pytest.raises(ValueError):
        pss_block(b"\x00" * 64, "sha512", 512)


def test_ecdsa_input_truncates_and_pads() -> None:
    sha512 = hashlib.sha512(b"m").digest()
    assert ecdsa_input(sha512, 256) == sha512[:32]
    assert ecdsa_input(sha512, 384) == sha512[:48]
    sha1 = hashlib.sha1(b"m").digest()
    assert ecdsa_input(sha1, 256) == b"\x00" * 12 + sha1
    with pytest.raises(ValueError):
        ecdsa_input(sha512, 521)


def test_ecdsa_truncation_matches_cryptography() -> None:
    """A signature over our truncated input verifies as ECDSA-with-SHA-512 on P-256."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha512(b"message").digest()
    # Sign the truncated value as if it were a SHA-256 digest (what the card does) ...
    sig = key.sign(ecdsa_input(digest, 256), ec.ECDSA(Prehashed(hashes.SHA256())))
    # ... and it verifies as a proper SHA-512 signature.
    key.public_key().verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA512())))


def test_origin_bound_digest() -> None:
    challenge = bytes(range(32))
    expected = hashlib.sha256(
        hashlib.sha256(b"https://ra.example").digest() + hashlib.sha256(challenge).digest()
    ).digest()
    assert origin_bound_digest("https://ra.example", challenge) == expected
    assert origin_bound_digest("https://other.example", challenge) != expected
    with pytest.raises(ValueError):
        origin_bound_digest("https://ra.example", challenge[:31])
