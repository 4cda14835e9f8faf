"""What each SignAlgorithm needs, as pure data (no PKCS#11 here).

The client sends a digest (Cloud KMS AsymmetricSign model), so the only checks
the parent can make before a worker is involved are the digest length and the
algorithm name; the key-type check needs the key and happens in the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hwgated.hsm.errors import InvalidArgument, InvalidDigest
from hwgated.hsm.types import KeyAlgorithm, SignAlgorithm

MAX_HMAC_INPUT = 1 << 20  # 1 MiB; the gRPC message limit is the real cap
MAX_BATCH = 4096


@dataclass(frozen=True)
class AlgorithmSpec:
    """How to run one SignAlgorithm: the key type it needs and the digest it takes."""

    key_type: KeyAlgorithm
    hash_name: str  # "sha256", "sha384", "sha512"
    digest_len: int | None  # None: input is the message itself (HMAC)


_SPECS: dict[SignAlgorithm, AlgorithmSpec] = {
    SignAlgorithm.ECDSA_SHA256: AlgorithmSpec(KeyAlgorithm.EC, "sha256", 32),
    SignAlgorithm.ECDSA_SHA384: AlgorithmSpec(KeyAlgorithm.EC, "sha384", 48),
    SignAlgorithm.RSA_PKCS1_SHA256: AlgorithmSpec(KeyAlgorithm.RSA, "sha256", 32),
    SignAlgorithm.RSA_PKCS1_SHA384: AlgorithmSpec(KeyAlgorithm.RSA, "sha384", 48),
    SignAlgorithm.RSA_PKCS1_SHA512: AlgorithmSpec(KeyAlgorithm.RSA, "sha512", 64),
    SignAlgorithm.RSA_PSS_SHA256: AlgorithmSpec(KeyAlgorithm.RSA, "sha256", 32),
    SignAlgorithm.RSA_PSS_SHA384: AlgorithmSpec(KeyAlgorithm.RSA, "sha384", 48),
    SignAlgorithm.RSA_PSS_SHA512: AlgorithmSpec(KeyAlgorithm.RSA, "sha512", 64),
    SignAlgorithm.HMAC_SHA256: AlgorithmSpec(KeyAlgorithm.GENERIC_SECRET, "sha256", None),
}

# DER DigestInfo prefixes (RFC 8017 section 9.2, note 1): prefix || digest is what
# CKM_RSA_PKCS signs for a PKCS#1 v1.5 signature over a precomputed hash.
DIGEST_INFO_PREFIX: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def algorithm_spec(algorithm: SignAlgorithm | str) -> AlgorithmSpec:
    """The spec of a known algorithm; an unknown name is an InvalidArgument."""
    try:
        return _SPECS[SignAlgorithm(algorithm)]
    except ValueError:
        raise InvalidArgument(f"unknown sign algorithm {algorithm!r}") from None


def check_sign_input(algorithm: SignAlgorithm, data: bytes) -> None:
    """Raise InvalidDigest when ``data`` is not a digest of the algorithm's hash."""
    spec = _SPECS[algorithm]
    if spec.digest_len is None:
        if len(data) > MAX_HMAC_INPUT:
            raise InvalidArgument(f"HMAC input longer than {MAX_HMAC_INPUT} bytes")
        return
    if len(data) != spec.digest_len:
        raise InvalidDigest(
            f"{algorithm.value} takes a {spec.digest_len}-byte digest, got {len(data)} bytes"
        )


def check_batch(algorithm: SignAlgorithm, items: Sequence[bytes]) -> None:
    """Validate every digest of a sign_many batch before any is signed."""
    if len(items) > MAX_BATCH:
        raise InvalidArgument(f"batch larger than {MAX_BATCH}")
    for index, data in enumerate(items):
        try:
            check_sign_input(algorithm, data)
        except InvalidArgument as exc:
            raise type(exc)(f"item {index}: {exc.message}") from None


def truncate_for_curve(digest: bytes, field_bits: int) -> bytes:
    """Leftmost bits of the digest per FIPS 186-5 6.4.1 when it is longer than the order.

    For the NIST curves the order has as many bits as the field; only whole
    bytes need cutting (P-256/P-384), P-521 is longer than any supported hash.
    """
    if len(digest) * 8 <= field_bits:
        return digest
    if field_bits % 8:
        raise InvalidArgument("digest truncation to a non-byte-aligned curve")
    return digest[: field_bits // 8]
