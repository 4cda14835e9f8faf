"""Key derivation: ECDH (CKD_NULL) and AES-ECB/CBC diversification, checked on the host."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hsm_support import HsmTestToken, LoopThread

from hwgated.hsm import (
    AlgorithmMismatch,
    DiversifyMechanism,
    HsmPool,
    InvalidArgument,
    KeyClass,
    KeyExists,
)


def _ecb(key: bytes, data: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(data)


def _shared_secret(token: HsmTestToken, peer: ec.EllipticCurvePrivateKey) -> bytes:
    ours = ec.derive_private_key(int.from_bytes(token.ecdh_private_value, "big"), ec.SECP256R1())
    return ours.exchange(ec.ECDH(), peer.public_key())


def test_ecdh_extractable_equals_host_shared_secret(
    pool: HsmPool, loop_thread: LoopThread, token: HsmTestToken
) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    expected = _shared_secret(token, peer)
    point = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    spki = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    compressed = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    for peer_form in (point, spki, compressed):
        derived = loop_thread.run(
            pool.derive_ecdh("ecdh-p256", peer_form, extractable=True, token_object=False)
        )
        assert derived.ref is None
        assert derived.value == expected
        assert expected.hex() not in repr(derived)
        derived.wipe()
        assert derived.value == bytes(32)


def test_non_extractable_ecdh_key_is_usable_inside_the_hsm(
    pool: HsmPool, loop_thread: LoopThread, token: HsmTestToken
) -> None:
    """The stored ECDH key's value never leaves the HSM; deriving from it proves its value."""
    peer = ec.generate_private_key(ec.SECP256R1())
    spki = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    derived = loop_thread.run(pool.derive_ecdh("ecdh-p256", spki, label="ecdh-session-1"))
    try:
        assert derived.value is None and derived.ref is not None
        assert derived.ref.key_class is KeyClass.SECRET
        info = {k.label: k for k in loop_thread.run(pool.list_keys())}["ecdh-session-1"]
        assert info.sensitive and not info.extractable
        data = bytes(range(16))
        child = loop_thread.run(
            pool.derive_diversified(
                derived.ref, DiversifyMechanism.AES_ECB, data, extractable=True, token_object=False
            )
        )
        assert child.value == _ecb(_shared_secret(token, peer), data)
        with pytest.raises(KeyExists):
            loop_thread.run(pool.derive_ecdh("ecdh-p256", spki, label="ecdh-session-1"))
    finally:
        loop_thread.run(pool.delete_key("ecdh-session-1"))


def test_diversification_ecb_and_cbc_equal_host_aes(
    pool: HsmPool, loop_thread: LoopThread, token: HsmTestToken
) -> None:
    data = bytes(range(32))
    iv = bytes(range(200, 216))
    ecb = loop_thread.run(
        pool.derive_diversified(
            "aes-master-x", "AES_ECB", data, extractable=True, token_object=False
        )
    )
    assert ecb.value == _ecb(token.aes_master_value, data)
    cbc = loop_thread.run(
        pool.derive_diversified(
            "aes-master-x",
            DiversifyMechanism.AES_CBC,
            data,
            iv,
            extractable=True,
            token_object=False,
        )
    )
    expected = Cipher(algorithms.AES(token.aes_master_value), modes.CBC(iv)).encryptor()
    assert cbc.value == expected.update(data)
    short = loop_thread.run(
        pool.derive_diversified(
            "aes-master-x", "AES_ECB", data[:16], extractable=True, token_object=False
        )
    )
    assert short.key_length == 16 and short.value == _ecb(token.aes_master_value, data[:16])


def test_diversification_from_non_extractable_master(
    pool: HsmPool, loop_thread: LoopThread
) -> None:
    derived = loop_thread.run(
        pool.derive_diversified("aes-master", "AES_ECB", bytes(16), label="diversified-1")
    )
    try:
        assert derived.value is None and derived.ref is not None
        assert derived.ref.label == "diversified-1"
    finally:
        assert loop_thread.run(pool.delete_key("diversified-1")) == 1


def test_derive_rejections(pool: HsmPool, loop_thread: LoopThread) -> None:
    with pytest.raises(InvalidArgument):
        loop_thread.run(pool.derive_diversified("aes-master-x", "AES_ECB", bytes(20)))
    with pytest.raises(InvalidArgument):
        loop_thread.run(pool.derive_diversified("aes-master-x", "AES_CBC", bytes(16), b"short"))
    with pytest.raises(InvalidArgument):  # a session key nobody can read is useless
        loop_thread.run(
            pool.derive_diversified("aes-master-x", "AES_ECB", bytes(16), token_object=False)
        )
    with pytest.raises(AlgorithmMismatch):
        loop_thread.run(
            pool.derive_ecdh("rsa-2048", b"\x04" + bytes(64), token_object=False, extractable=True)
        )
    with pytest.raises(InvalidArgument):  # not a point on P-256
        loop_thread.run(
            pool.derive_ecdh("ecdh-p256", b"\x04" + bytes(64), token_object=False, extractable=True)
        )
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InvalidArgument):
        loop_thread.run(pool.derive_ecdh("ecdh-p256", p384, token_object=False, extractable=True))
