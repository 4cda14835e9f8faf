"""Checks and audit records shared by Sign and SignStream.

Inputs are checked here, before a worker is involved, so that a bad digest is
reported with the metadata a program needs (``expected_length``) and a wrong
algorithm for the key's type is caught from the cached key description
instead of costing a worker round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from google.protobuf.message import Message

from hwgated import errors
from hwgated.auth.audit import audit
from hwgated.hsm import KeyAlgorithm, KeyInfo, SignAlgorithm
from hwgated.hsm.algorithms import algorithm_spec

MAX_HMAC_DATA = 64 * 1024  # the proto's documented limit
_HMAC_KEY_TYPES = (KeyAlgorithm.GENERIC_SECRET, KeyAlgorithm.OTHER)


def sign_input(algorithm: SignAlgorithm, request: Message) -> bytes:
    """The bytes a Sign or single-item SignStream request asks to sign, after checks:
    its ``input`` oneof must be the digest (asymmetric algorithms) or the data (HMAC)."""
    kind = request.WhichOneof("input")
    return checked_input(algorithm, kind, getattr(request, kind) if kind else b"")


def checked_input(algorithm: SignAlgorithm, kind: str | None, value: bytes) -> bytes:
    """*value* as the ``input`` case *kind* ("digest" or "data"), checked against
    *algorithm*: the right case, the digest's length, HMAC's data limit."""
    spec = algorithm_spec(algorithm)
    if spec.digest_len is None:
        if kind != "data":
            raise errors.InvalidArgument(
                f"{algorithm.value} signs data: set input to data", field="input"
            )
        if len(value) > MAX_HMAC_DATA:
            raise errors.InvalidArgument(
                f"HMAC data is limited to {MAX_HMAC_DATA} bytes", field="data"
            )
        return bytes(value)
    if kind != "digest":
        raise errors.InvalidArgument(
            f"{algorithm.value} signs a digest: set input to digest", field="input"
        )
    if len(value) != spec.digest_len:
        raise errors.InvalidDigest(
            f"{algorithm.value} takes a {spec.digest_len}-byte digest, got {len(value)} bytes",
            expected_length=spec.digest_len,
        )
    return bytes(value)


def check_key_type(algorithm: SignAlgorithm, info: KeyInfo) -> None:
    """ALGORITHM_MISMATCH when the key's type cannot compute ``algorithm``."""
    spec = algorithm_spec(algorithm)
    if spec.key_type is KeyAlgorithm.GENERIC_SECRET:
        ok = info.key_type in _HMAC_KEY_TYPES
    else:
        ok = info.key_type is spec.key_type
    if not ok:
        raise errors.AlgorithmMismatch(
            f"{algorithm.value} needs another key type than {info.key_type.value}"
        )


def fingerprint(data: bytes) -> str:
    """The first 8 hex digits of SHA-256(data): enough to match records, too short to reveal."""
    return hashlib.sha256(data).hexdigest()[:8]


def audit_sign(
    key: str,
    algorithm: SignAlgorithm | None,
    inputs: Iterable[bytes],
    outcome: str,
    **fields: object,
) -> None:
    """One ``hsm.sign`` record for one signature or one stream batch (space-separated prints)."""
    audit(
        "hsm.sign",
        outcome,
        key=key,
        algorithm=algorithm.value if algorithm is not None else None,
        digest_sha256=" ".join(fingerprint(item) for item in inputs),
        **fields,
    )
