"""Signature schemes in the pure protocol layer: its own errors, never the API's.

The API errors (INVALID_DIGEST, ALGORITHM_MISMATCH, CARD_ERROR) are made from
these by hwgated.pivapp.schemes; both sides are checked here.
"""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from hwgated import errors
from hwgated.piv import schemes
from hwgated.piv.errors import (
    DigestLengthError,
    PivParseError,
    SchemeError,
    SchemeMismatch,
    UnknownScheme,
)
from hwgated.piv.slots import Algorithm
from hwgated.pivapp import schemes as app_schemes

SHA256 = hashlib.sha256(b"m").digest()
SHA384 = hashlib.sha384(b"m").digest()


def _certificate(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def test_the_protocol_raises_only_its_own_errors() -> None:
    with pytest.raises(DigestLengthError) as digest:
        schemes.SCHEMES["ECDSA_SHA256"].check_digest(SHA384)
    assert digest.value.expected_length == 32
    assert not isinstance(digest.value, errors.GatewayError)
    with pytest.raises(UnknownScheme):
        schemes.scheme_named("HMAC_SHA256")
    with pytest.raises(UnknownScheme):  # "set or not" is the API's question, not the protocol's
        schemes.scheme_named("UNSPECIFIED")
    with pytest.raises(SchemeMismatch):
        schemes.card_block(schemes.SCHEMES["ECDSA_SHA256"], Algorithm.RSA2048, SHA256)
    with pytest.raises(SchemeMismatch):  # 64+64+2 bytes do not fit 1024 bits
        schemes.card_block(
            schemes.SCHEMES["RSA_PSS_SHA512"], Algorithm.RSA1024, hashlib.sha512().digest()
        )
    with pytest.raises(PivParseError):
        schemes.key_algorithm(b"\x30\x03\x02\x01\x01")
    with pytest.raises(SchemeMismatch):
        schemes.key_algorithm(_certificate(ed25519.Ed25519PrivateKey.generate()))
    assert issubclass(SchemeError, ValueError) and not issubclass(SchemeError, errors.GatewayError)


def test_key_algorithm_from_the_certificate() -> None:
    p384 = _certificate(ec.generate_private_key(ec.SECP384R1()))
    assert schemes.key_algorithm(p384) is Algorithm.ECCP384
    rsa2048 = _certificate(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert schemes.key_algorithm(rsa2048) is Algorithm.RSA2048


@pytest.mark.parametrize(
    ("call", "reason", "metadata"),
    [
        (lambda: app_schemes.scheme_named(""), "INVALID_ARGUMENT", {"field": "algorithm"}),
        (lambda: app_schemes.scheme_named("HMAC_SHA256"), "ALGORITHM_MISMATCH", {}),
        (
            lambda: app_schemes.check_digest(schemes.SCHEMES["RSA_PSS_SHA384"], SHA256),
            "INVALID_DIGEST",
            {"expected_length": "48"},
        ),
        (
            lambda: app_schemes.card_block(
                schemes.SCHEMES["RSA_PKCS1_SHA256"], Algorithm.ECCP256, SHA256
            ),
            "ALGORITHM_MISMATCH",
            {},
        ),
        (lambda: app_schemes.key_algorithm(b"\x30\x00"), "CARD_ERROR", {}),
        (
            lambda: app_schemes.key_algorithm(_certificate(ed25519.Ed25519PrivateKey.generate())),
            "ALGORITHM_MISMATCH",
            {},
        ),
    ],
)
def test_the_application_layer_translates_to_api_errors(
    call: object, reason: str, metadata: dict[str, str]
) -> None:
    with pytest.raises(errors.GatewayError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.reason == reason
    assert caught.value.metadata == metadata
    assert caught.value.__cause__ is None  # raised "from None": no protocol detail chained
