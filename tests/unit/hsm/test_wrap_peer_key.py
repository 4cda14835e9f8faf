"""RewrapForPeer's peer key check (hwgated.hsm.p11wrap.peer_key), before the HSM is asked.

P-256 only (hsm.proto TransportKdf says why); everything else is INVALID_ARGUMENT
naming the field, so a client learns which input to fix.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hwgated.errors import InvalidArgument
from hwgated.hsm.p11wrap import peer_key

SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
POINT = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
COMPRESSED = serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint


def test_p256_spki_and_points_give_the_uncompressed_point() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    expected = public.public_bytes(*POINT)
    for form in (SPKI, POINT, COMPRESSED):
        assert peer_key(public.public_bytes(*form)) == expected


@pytest.mark.parametrize(
    "peer",
    [
        ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(*SPKI),
        ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(*POINT),
        ec.generate_private_key(ec.SECP256K1()).public_key().public_bytes(*SPKI),
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(*SPKI),
        b"\x04" + bytes(64),  # not on the curve
        b"\x30\x03\x02\x01\x00",  # DER, but no SPKI
        b"garbage",
    ],
    ids=["p384-spki", "p384-point", "secp256k1", "rsa", "off-curve", "not-spki", "garbage"],
)
def test_anything_else_is_invalid_argument_naming_the_field(peer: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        peer_key(peer)
    assert caught.value.reason == "INVALID_ARGUMENT"
    assert caught.value.metadata == {"field": "peer_public_key"}
