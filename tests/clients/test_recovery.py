"""hwgate.recovery, the peer's side of RewrapForPeer, against an independent model.

The model here builds a response the way hsm.proto documents it (cryptography
only: ECDH, SHA-256 info, AES-ECB, RFC 5649), including SoftHSM2's zero
padding of a PKCS#8 to a multiple of 8, and the daemon's own info function
(hwgated.hsm.p11wrap.transport_info) must give the same bytes. The real
HSM round trip is tests/hsm_service/test_key_wrap.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from hypothesis import given
from hypothesis import strategies as st

from hwgate import recovery

POINT = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
PKCS8 = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8


@dataclass(frozen=True)
class Result:
    wrapped_key: bytes
    hsm_public_key: bytes
    kdf: int = recovery.KDF_ECDH_NULL_AES_ECB_SHA256
    mechanism: int = recovery.MECHANISM_AES_KEY_WRAP_PAD


def hsm_side(peer: ec.EllipticCurvePublicKey, payload: bytes) -> Result:
    """What the HSM does, per hsm.proto (not using hwgate.recovery)."""
    hsm = ec.generate_private_key(ec.SECP256R1())
    z = hsm.exchange(ec.ECDH(), peer)
    q_hsm, q_peer = hsm.public_key().public_bytes(*POINT), peer.public_bytes(*POINT)
    info = hashlib.sha256(b"hwgate.v1.RewrapForPeer\x00" + q_hsm + q_peer).digest()
    encryptor = Cipher(algorithms.AES(z), modes.ECB()).encryptor()
    transport = encryptor.update(info) + encryptor.finalize()
    spki = hsm.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Result(aes_key_wrap_with_padding(transport, payload), spki)


def softhsm_padded(der: bytes) -> bytes:
    return der + bytes(-len(der) % 8)


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
     rsa.generate_private_key(public_exponent=65537, key_size=2048)],
    ids=["p256", "p384", "rsa2048"],
)  # fmt: skip
@pytest.mark.parametrize("padded", [False, True], ids=["exact", "softhsm-padded"])
def test_recovers_the_escrowed_private_key(key: object, padded: bool) -> None:
    der = key.private_bytes(*PKCS8, serialization.NoEncryption())  # type: ignore[attr-defined]
    phone = recovery.new_ephemeral_key()
    result = hsm_side(phone.public_key(), softhsm_padded(der) if padded else der)
    recovered = recovery.recover_private_key(phone, result)
    assert recovered.private_bytes(*PKCS8, serialization.NoEncryption()) == der  # type: ignore[union-attr]


def test_recovers_a_secret() -> None:
    phone = recovery.new_ephemeral_key()
    assert recovery.recover_secret(phone, hsm_side(phone.public_key(), b"k" * 32)) == b"k" * 32


def test_the_daemon_computes_the_same_info() -> None:
    p11wrap = pytest.importorskip("hwgated.hsm.p11wrap")
    hsm, phone = ec.generate_private_key(ec.SECP256R1()), recovery.new_ephemeral_key()
    spki = hsm.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = p11wrap.transport_info(
        hsm.public_key().public_bytes(*POINT), phone.public_key().public_bytes(*POINT)
    )
    z = hsm.exchange(ec.ECDH(), phone.public_key())
    encryptor = Cipher(algorithms.AES(z), modes.ECB()).encryptor()
    assert recovery.transport_key(phone, spki) == encryptor.update(info) + encryptor.finalize()


def test_refusals() -> None:
    phone = recovery.new_ephemeral_key()
    good = hsm_side(phone.public_key(), b"s" * 32)
    other = recovery.new_ephemeral_key()
    cases = {
        "another phone": (other, good),
        "tampered": (phone, Result(good.wrapped_key[:-1] + b"\x00", good.hsm_public_key)),
        "unknown kdf": (phone, Result(good.wrapped_key, good.hsm_public_key, kdf=7)),
        "unknown mechanism": (phone, Result(good.wrapped_key, good.hsm_public_key, mechanism=9)),
        "not spki": (phone, Result(good.wrapped_key, b"\x04" + bytes(64))),
    }
    for what, (key, result) in cases.items():
        with pytest.raises(recovery.RecoveryError):
            recovery.recover_secret(key, result)
        assert what  # every case raised
    with pytest.raises(recovery.RecoveryError):  # a secret is not a private key
        recovery.recover_private_key(phone, good)


@given(st.binary(min_size=0, max_size=300))
def test_pkcs8_der_never_raises_anything_else(data: bytes) -> None:
    try:
        out = recovery.pkcs8_der(data)
    except recovery.RecoveryError:
        return
    assert data.startswith(out) and not any(data[len(out) :]) and len(data) - len(out) <= 7


@given(st.binary(min_size=0, max_size=200), st.integers(0, 7))
def test_pkcs8_der_cuts_exactly_the_zero_padding(body: bytes, pad: int) -> None:
    length = len(body)
    header = bytes([length]) if length < 0x80 else bytes([0x81, length])
    der = b"\x30" + header + body
    assert recovery.pkcs8_der(der + bytes(pad)) == der
    if pad:
        with pytest.raises(recovery.RecoveryError):
            recovery.pkcs8_der(der + bytes(pad - 1) + b"\x01")
