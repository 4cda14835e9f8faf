"""Unwrap the Key Management key hwgated re-wrapped for this phone (RewrapForPeer).

The transport key is derived as ``hwgate.v1.TransportKdf``
TRANSPORT_KDF_ECDH_NULL_AES_ECB_SHA256 documents it (protos/hwgate/v1/hsm.proto):

    Z = x-coordinate of ECDH(phone's ephemeral key, HSM's ephemeral key)
    T = AES-256-ECB-Encrypt(key = Z[0:32],
                            SHA-256("hwgate.v1.RewrapForPeer" || 0x00 || Q_hsm || Q_peer))

(Q uncompressed points), then the key is AES key unwrap with padding (RFC
5649) under T: a PKCS#8 PrivateKeyInfo, possibly followed by up to 7 zero
bytes (SoftHSM2 pads a private key's DER to a multiple of 8 before wrapping).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from hwgate_apps.phone.wallet import ActivationError

KDF = "TRANSPORT_KDF_ECDH_NULL_AES_ECB_SHA256"
MECHANISM = "WRAP_MECHANISM_AES_KEY_WRAP_PAD"
_LABEL = b"hwgate.v1.RewrapForPeer\x00"


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def transport_key(peer: ec.EllipticCurvePrivateKey, hsm_public: ec.EllipticCurvePublicKey) -> bytes:
    """T, as the HSM derived it (see the module docstring)."""
    z = peer.exchange(ec.ECDH(), hsm_public)
    info = hashlib.sha256(_LABEL + _point(hsm_public) + _point(peer.public_key())).digest()
    encryptor = Cipher(algorithms.AES(z[:32]), modes.ECB()).encryptor()
    return encryptor.update(info) + encryptor.finalize()


def _der_length(data: bytes) -> int:
    """The length of the DER SEQUENCE at the start of *data* (header included)."""
    if len(data) < 2 or data[0] != 0x30:
        raise ActivationError("the unwrapped key is not DER")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if not 1 <= count <= 3 or len(data) < 2 + count:
        raise ActivationError("the unwrapped key is not DER")
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def unwrap_delivered(delivered: dict[str, Any], peer: ec.EllipticCurvePrivateKey) -> Any:
    """The private key in the server's ``key_management`` answer, unwrapped with *peer*."""
    if delivered.get("kdf") != KDF or delivered.get("mechanism") != MECHANISM:
        raise ActivationError(
            f"unknown key transport {delivered.get('kdf')}/{delivered.get('mechanism')}"
        )
    try:
        hsm_public = serialization.load_der_public_key(
            base64.b64decode(delivered["hsm_public_key"])
        )
        wrapped = base64.b64decode(delivered["wrapped_key"])
    except (KeyError, ValueError):
        raise ActivationError("the key-management answer is malformed") from None
    if not isinstance(hsm_public, ec.EllipticCurvePublicKey):
        raise ActivationError("the HSM's key is not an EC key")
    try:
        der = aes_key_unwrap_with_padding(transport_key(peer, hsm_public), wrapped)
    except InvalidUnwrap:
        raise ActivationError("the key does not unwrap with this phone's key") from None
    end = _der_length(der)
    if end > len(der) or any(der[end:]) or len(der) - end > 7:
        raise ActivationError("the unwrapped key has trailing data")
    try:
        return serialization.load_der_private_key(der[:end], None)
    except ValueError:
        raise ActivationError("the unwrapped key is not PKCS#8") from None
