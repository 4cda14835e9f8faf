"""Signing through the pool, verified with cryptography against get_public_key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from hsm_support import TOKEN_LABEL, HsmTestToken, LoopThread

from hwgated.hsm import (
    AlgorithmMismatch,
    HsmPool,
    InvalidArgument,
    InvalidDigest,
    KeyNotFound,
    SignAlgorithm,
)

_HASHES = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}


def _digest(algorithm: SignAlgorithm, message: bytes) -> bytes:
    h = hashes.Hash(_HASHES[algorithm.value.rsplit("_", 1)[1]])
    h.update(message)
    return h.finalize()


def _verify(spki: bytes, algorithm: SignAlgorithm, message: bytes, signature: bytes) -> None:
    public = serialization.load_der_public_key(spki)
    hash_alg = _HASHES[algorithm.value.rsplit("_", 1)[1]]
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, message, ec.ECDSA(hash_alg))
    elif algorithm.value.startswith("RSA_PSS"):
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        public.verify(signature, message, pss, hash_alg)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, message, padding.PKCS1v15(), hash_alg)


@pytest.mark.parametrize(
    "algorithm, key",
    [
        (SignAlgorithm.ECDSA_SHA256, "ec-p256"),
        (SignAlgorithm.ECDSA_SHA384, "ec-p256"),  # digest truncated to the curve size
        (SignAlgorithm.RSA_PKCS1_SHA256, "rsa-2048"),
        (SignAlgorithm.RSA_PKCS1_SHA384, "rsa-2048"),
        (SignAlgorithm.RSA_PKCS1_SHA512, "rsa-2048"),
        (SignAlgorithm.RSA_PSS_SHA256, "rsa-2048"),
        (SignAlgorithm.RSA_PSS_SHA384, "rsa-2048"),
        (SignAlgorithm.RSA_PSS_SHA512, "rsa-2048"),
    ],
)
def test_every_asymmetric_algorithm_verifies(
    pool: HsmPool, loop_thread: LoopThread, algorithm: SignAlgorithm, key: str
) -> None:
    message = b"derived credential " + algorithm.value.encode()
    signature = loop_thread.run(pool.sign(key, algorithm, _digest(algorithm, message)))
    spki = loop_thread.run(pool.get_public_key(key))
    _verify(spki, algorithm, message, signature)


def test_hmac_matches_host_hmac(
    pool: HsmPool, loop_thread: LoopThread, token: HsmTestToken
) -> None:
    data = b"activation code input"
    mac = loop_thread.run(pool.sign("hmac-key", SignAlgorithm.HMAC_SHA256, data))
    assert mac == hmac.new(token.hmac_key, data, hashlib.sha256).digest()


def test_sign_many_thousand_digests_all_verify(pool: HsmPool, loop_thread: LoopThread) -> None:
    messages = [os.urandom(16) for _ in range(1000)]
    digests = [hashlib.sha256(m).digest() for m in messages]
    signatures = loop_thread.run(pool.sign_many("ec-p256", "ECDSA_SHA256", digests))
    assert len(signatures) == 1000
    public = serialization.load_der_public_key(loop_thread.run(pool.get_public_key("ec-p256")))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for digest, signature in zip(digests, signatures, strict=True):
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_references_by_uri_and_id(
    pool: HsmPool, loop_thread: LoopThread, token: HsmTestToken
) -> None:
    digest = hashlib.sha256(b"uri").digest()
    refs = [
        f"pkcs11:token={TOKEN_LABEL.replace('-', '%2D')};object=rsa%2D2048;type=private",
        "pkcs11:id=%01%02;type=private",
        "id:" + token.rsa_id.hex(),
    ]
    spki = loop_thread.run(pool.get_public_key("rsa-2048"))
    for ref in refs:
        sig = loop_thread.run(pool.sign(ref, SignAlgorithm.RSA_PKCS1_SHA256, digest))
        public = serialization.load_der_public_key(spki)
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    assert loop_thread.run(pool.get_public_key("pkcs11:object=rsa-2048;type=public")) == spki


def test_errors(pool: HsmPool, loop_thread: LoopThread) -> None:
    digest = hashlib.sha256(b"e").digest()
    with pytest.raises(KeyNotFound) as nf:
        loop_thread.run(pool.sign("no-such-key", SignAlgorithm.ECDSA_SHA256, digest))
    assert nf.value.reason == "KEY_NOT_FOUND"
    with pytest.raises(KeyNotFound):
        loop_thread.run(pool.sign("pkcs11:token=other;object=ec-p256", "ECDSA_SHA256", digest))
    with pytest.raises(InvalidDigest) as bad:
        loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, digest[:31]))
    assert bad.value.reason == "INVALID_DIGEST"
    with pytest.raises(InvalidDigest):
        loop_thread.run(pool.sign_many("ec-p256", SignAlgorithm.ECDSA_SHA256, [digest, b"x"]))
    with pytest.raises(AlgorithmMismatch) as mismatch:
        loop_thread.run(pool.sign("rsa-2048", SignAlgorithm.ECDSA_SHA256, digest))
    assert mismatch.value.reason == "ALGORITHM_MISMATCH"
    with pytest.raises(AlgorithmMismatch):
        loop_thread.run(pool.sign("ec-p256", SignAlgorithm.HMAC_SHA256, b"data"))
    with pytest.raises(InvalidArgument):
        loop_thread.run(pool.sign("ec-p256", "ECDSA_MD5", digest))
    # The pool still serves after all of that.
    assert loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, digest))


def test_concurrent_signing_never_errors(pool: HsmPool, loop_thread: LoopThread) -> None:
    """16 callers x 70 signatures at once, all valid: a fixed amount of work, not
    "as many as fit in 3 s" (a stress run managed 882 in that window, which said
    something about the machine, not about errors)."""
    digest = hashlib.sha256(b"load").digest()
    per_caller = 70

    async def caller() -> int:
        for _ in range(per_caller):
            sig = await pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, digest)
            assert sig[0] == 0x30
        return per_caller

    async def run() -> list[int]:
        return await asyncio.gather(*(caller() for _ in range(16)))

    counts = loop_thread.run(run())
    assert counts == [per_caller] * 16
