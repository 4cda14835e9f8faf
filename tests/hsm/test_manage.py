"""Listing, generating and deleting keys; no key material in listings."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from hsm_support import LoopThread

from hwgated.hsm import (
    HsmPool,
    InvalidArgument,
    KeyAlgorithm,
    KeyClass,
    KeyExists,
    KeyNotFound,
    KeyUsage,
    SignAlgorithm,
)


def test_list_keys_describes_the_test_keys(pool: HsmPool, loop_thread: LoopThread) -> None:
    keys = {(k.label, k.key_class): k for k in loop_thread.run(pool.list_keys())}
    ec_key = keys[("ec-p256", KeyClass.PRIVATE)]
    assert (ec_key.key_type, ec_key.curve, ec_key.size_bits) == (KeyAlgorithm.EC, "P-256", 256)
    assert ec_key.id_hex == "01" and KeyUsage.SIGN in ec_key.usages
    assert ec_key.sensitive and not ec_key.extractable and ec_key.local
    rsa_key = keys[("rsa-2048", KeyClass.PRIVATE)]
    assert (rsa_key.key_type, rsa_key.size_bits, rsa_key.id_hex) == (KeyAlgorithm.RSA, 2048, "0102")
    master = keys[("aes-master", KeyClass.SECRET)]
    assert master.key_type is KeyAlgorithm.AES and master.size_bits == 256
    assert KeyUsage.DERIVE in master.usages and not master.extractable
    # public halves of listed pairs are folded into the private entry
    assert ("ec-p256", KeyClass.PUBLIC) not in keys
    assert rsa_key.ref.to_uri() == "pkcs11:object=rsa-2048;id=%01%02;type=private"


def test_generate_sign_delete_cycle(pool: HsmPool, loop_thread: LoopThread) -> None:
    info = loop_thread.run(pool.generate_key_pair("gen-ec", "EC_P256", id=b"\x42"))
    try:
        assert (info.label, info.id_hex, info.curve) == ("gen-ec", "42", "P-256")
        assert info.sensitive and not info.extractable and info.local
        with pytest.raises(KeyExists) as exists:
            loop_thread.run(pool.generate_key_pair("gen-ec", "EC_P384"))
        assert exists.value.reason == "KEY_EXISTS"
        digest = hashlib.sha256(b"gen").digest()
        # The other worker learns about the new key too (each worker signs once at least).
        sigs = [
            loop_thread.run(pool.sign("gen-ec", SignAlgorithm.ECDSA_SHA256, digest))
            for _ in range(4)
        ]
        public = serialization.load_der_public_key(loop_thread.run(pool.get_public_key("gen-ec")))
        assert isinstance(public, ec.EllipticCurvePublicKey)
        for sig in sigs:
            public.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    finally:
        assert loop_thread.run(pool.delete_key("gen-ec")) == 2  # private + public
    for _ in range(4):  # no worker keeps using a cached handle of the deleted key
        with pytest.raises(KeyNotFound):
            loop_thread.run(pool.sign("gen-ec", SignAlgorithm.ECDSA_SHA256, digest))
    with pytest.raises(KeyNotFound):
        loop_thread.run(pool.delete_key("gen-ec"))


def test_generate_rsa_and_secret_keys(pool: HsmPool, loop_thread: LoopThread) -> None:
    try:
        rsa_info = loop_thread.run(pool.generate_key_pair("gen-rsa", "RSA2048"))
        assert rsa_info.size_bits == 2048 and len(rsa_info.id_hex) == 32
        spki = loop_thread.run(pool.get_public_key("gen-rsa"))
        assert isinstance(serialization.load_der_public_key(spki), rsa.RSAPublicKey)
        aes = loop_thread.run(pool.generate_secret_key("gen-aes", "AES128"))
        assert (aes.key_type, aes.size_bits, aes.sensitive) == (KeyAlgorithm.AES, 128, True)
        mac = loop_thread.run(pool.generate_secret_key("gen-hmac", "GENERIC_SECRET"))
        assert len(loop_thread.run(pool.sign("gen-hmac", "HMAC_SHA256", b"x"))) == 32
        assert mac.key_type is KeyAlgorithm.GENERIC_SECRET
        with pytest.raises(KeyExists):
            loop_thread.run(pool.generate_secret_key("rsa-2048", "AES256"))
        with pytest.raises(InvalidArgument):
            loop_thread.run(pool.generate_key_pair("gen-bad", "DSA1024"))
    finally:
        for label in ("gen-rsa", "gen-aes", "gen-hmac"):
            loop_thread.run(pool.delete_key(label))
