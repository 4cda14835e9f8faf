"""The peer's side of key recovery: open what ``HsmService.RewrapForPeer`` wrapped for it.

The device (a phone) makes an ephemeral EC key pair, sends the public half to
the issuer, which asks the gateway to re-wrap the escrowed key for it
(:meth:`hwgate.Client.rewrap_for_peer`). The answer holds the key wrapped under a
transport key and the HSM's ephemeral public key. With its private key the
device derives the same transport key and unwraps, using ``cryptography`` only
(no gRPC call, no HSM)::

    phone_key = recovery.new_ephemeral_key()
    result = client.rewrap_for_peer("escrow-kek", blob, "ec-p256",
                                    recovery.public_key_der(phone_key))
    km_key = recovery.recover_private_key(phone_key, result)

The transport key (hsm.proto ``TransportKdf``): Z = the P-256 ECDH shared
point's 32-byte x-coordinate (PKCS#11 CKD_NULL, the only KDF SoftHSM2 takes);
T = AES-256-ECB(Z, SHA-256("hwgate.v1.RewrapForPeer" || 0x00 || Q_hsm || Q_peer)),
both points uncompressed. The key is wrapped under T with AES key wrap with
padding (RFC 5649): a private key as PKCS#8 DER, which some modules pad with
zero bytes to a multiple of 8 before wrapping (:func:`pkcs8_der` trims them by
the DER's own length).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

TRANSPORT_LABEL = b"hwgate.v1.RewrapForPeer"
TRANSPORT_KEY_BYTES = 32
# hsm.proto values (kept here so the helper works on any object with these fields).
KDF_ECDH_NULL_AES_ECB_SHA256 = 1  # TransportKdf.TRANSPORT_KDF_ECDH_NULL_AES_ECB_SHA256
MECHANISM_AES_KEY_WRAP_PAD = 1  # WrapMechanism.WRAP_MECHANISM_AES_KEY_WRAP_PAD
MAX_DER_PADDING = 7


class RecoveryError(ValueError):
    """The re-wrapped key cannot be recovered with this private key (wrong key, tampered
    blob, a KDF or mechanism this helper does not know, or a blob that holds no key)."""


class RewrapResult(Protocol):
    """What :func:`recover_private_key` reads: ``hwgate.v1.RewrapForPeerResponse`` fits."""

    @property
    def wrapped_key(self) -> bytes: ...

    @property
    def hsm_public_key(self) -> bytes: ...

    @property
    def kdf(self) -> int: ...

    @property
    def mechanism(self) -> int: ...


def new_ephemeral_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key pair for one recovery (the curve RewrapForPeer takes)."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_der(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo to send as ``peer_public_key``."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def transport_key(private_key: ec.EllipticCurvePrivateKey, hsm_public_key: bytes) -> bytes:
    """The AES-256 transport key the HSM derived (see the module doc)."""
    try:
        hsm = serialization.load_der_public_key(hsm_public_key)
    except ValueError:
        raise RecoveryError("hsm_public_key is not a DER SubjectPublicKeyInfo") from None
    if not isinstance(hsm, ec.EllipticCurvePublicKey) or hsm.curve.name != private_key.curve.name:
        raise RecoveryError(f"hsm_public_key is not an EC key on {private_key.curve.name}")
    if hsm.curve.name != "secp256r1":
        raise RecoveryError("the transport key agreement is on P-256 only")
    shared = private_key.exchange(ec.ECDH(), hsm)
    info = hashlib.sha256(
        TRANSPORT_LABEL + b"\x00" + _point(hsm) + _point(private_key.public_key())
    ).digest()
    encryptor = Cipher(algorithms.AES(shared), modes.ECB()).encryptor()
    return encryptor.update(info) + encryptor.finalize()


def unwrap_value(private_key: ec.EllipticCurvePrivateKey, result: RewrapResult) -> bytes:
    """The unwrapped bytes: a private key's PKCS#8 DER (maybe zero-padded), a secret's value."""
    if result.kdf != KDF_ECDH_NULL_AES_ECB_SHA256:
        raise RecoveryError(f"unknown transport KDF {result.kdf}")
    if result.mechanism != MECHANISM_AES_KEY_WRAP_PAD:
        raise RecoveryError(f"unknown wrap mechanism {result.mechanism}")
    key = transport_key(private_key, result.hsm_public_key)
    try:
        return aes_key_unwrap_with_padding(key, result.wrapped_key)
    except InvalidUnwrap:
        raise RecoveryError("the wrapped key does not unwrap with this private key") from None


def pkcs8_der(data: bytes) -> bytes:
    """*data* cut to its outer DER SEQUENCE (RecoveryError unless only up to 7 zero bytes
    follow it: SoftHSM2 pads a private key's PKCS#8 to a multiple of 8 before wrapping)."""
    if len(data) < 2 or data[0] != 0x30:
        raise RecoveryError("the unwrapped bytes are not a DER SEQUENCE")
    if data[1] < 0x80:
        end = 2 + data[1]
    else:
        size = data[1] & 0x7F
        if not 0 < size <= 4 or len(data) < 2 + size:
            raise RecoveryError("the unwrapped bytes have a bad DER length")
        end = 2 + size + int.from_bytes(data[2 : 2 + size], "big")
    tail = data[end:]
    if end > len(data) or len(tail) > MAX_DER_PADDING or any(tail):
        raise RecoveryError("the unwrapped bytes are not one DER value (with zero padding)")
    return data[:end]


def recover_private_key(
    private_key: ec.EllipticCurvePrivateKey, result: RewrapResult
) -> PrivateKeyTypes:
    """The escrowed private key, from the device's ephemeral *private_key* and the
    ``RewrapForPeerResponse``; RecoveryError when it cannot be recovered."""
    der = pkcs8_der(unwrap_value(private_key, result))
    try:
        return serialization.load_der_private_key(der, password=None)
    except ValueError:
        raise RecoveryError("the unwrapped bytes are not a PKCS#8 private key") from None


def recover_secret(private_key: ec.EllipticCurvePrivateKey, result: RewrapResult) -> bytes:
    """The escrowed secret key's value (an AES or generic secret key was escrowed)."""
    return unwrap_value(private_key, result)
