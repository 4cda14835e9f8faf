"""Signature schemes for card keys: which digest fits which key, and the block the card signs.

A PIV card does only the raw private-key operation (SP 800-78-4): the host
pads RSA blocks (PKCS#1 v1.5 or EMSA-PSS) and cuts ECDSA hashes to the field
size. Everything here is checked *before* a command reaches the card, so a bad
request costs no card time and never leaves a half-done operation behind. The
key's type comes from the slot's certificate, the only public description of
the key a PIV card offers. Errors are this package's own (``SchemeError``,
``PivParseError``); ``hwgated.pivapp.schemes`` turns them into API errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hwgated.piv import signing
from hwgated.piv.errors import DigestLengthError, PivParseError, SchemeMismatch, UnknownScheme
from hwgated.piv.slots import Algorithm


class Family(Enum):
    ECDSA = "ecdsa"
    PKCS1 = "pkcs1"
    PSS = "pss"


@dataclass(frozen=True)
class Scheme:
    """One complete scheme: key family, padding and hash (named like SignatureAlgorithm)."""

    name: str  # the SignatureAlgorithm value name without its prefix, e.g. "ECDSA_SHA256"
    family: Family
    hash_name: str  # "sha256", "sha384", "sha512"
    digest_size: int

    def check_digest(self, digest: bytes) -> None:
        """DigestLengthError unless *digest* is exactly as long as the scheme's hash."""
        if len(digest) != self.digest_size:
            raise DigestLengthError(
                f"{self.name} needs a {self.digest_size}-byte digest, got {len(digest)}",
                expected_length=self.digest_size,
            )


def _scheme(name: str, family: Family, bits: int) -> Scheme:
    return Scheme(name, family, f"sha{bits}", bits // 8)


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        _scheme("ECDSA_SHA256", Family.ECDSA, 256),
        _scheme("ECDSA_SHA384", Family.ECDSA, 384),
        _scheme("RSA_PKCS1_SHA256", Family.PKCS1, 256),
        _scheme("RSA_PKCS1_SHA384", Family.PKCS1, 384),
        _scheme("RSA_PKCS1_SHA512", Family.PKCS1, 512),
        _scheme("RSA_PSS_SHA256", Family.PSS, 256),
        _scheme("RSA_PSS_SHA384", Family.PSS, 384),
        _scheme("RSA_PSS_SHA512", Family.PSS, 512),
    )
}

_CURVES: dict[str, Algorithm] = {"secp256r1": Algorithm.ECCP256, "secp384r1": Algorithm.ECCP384}
_RSA_SIZES: dict[int, Algorithm] = {1024: Algorithm.RSA1024, 2048: Algorithm.RSA2048}


def scheme_named(name: str) -> Scheme:
    """The scheme for a SignatureAlgorithm name (e.g. "ECDSA_SHA256"); UnknownScheme otherwise."""
    scheme = SCHEMES.get(name)
    if scheme is None:
        raise UnknownScheme(f"{name} is not a card signature scheme")
    return scheme


def key_algorithm(certificate: bytes) -> Algorithm:
    """The PIV algorithm id of the key certified by *certificate* (DER).

    PivParseError when the certificate does not parse, SchemeMismatch for a key
    type no scheme fits.
    """
    try:
        key = x509.load_der_x509_certificate(certificate).public_key()
    except ValueError as exc:
        raise PivParseError(f"the slot's certificate does not parse: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name]
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in _RSA_SIZES:
        return _RSA_SIZES[key.key_size]
    raise SchemeMismatch("the slot's key type is not one hwgate can sign with")


def card_block(scheme: Scheme, algorithm: Algorithm, digest: bytes) -> bytes:
    """The exact input of GENERAL AUTHENTICATE tag 81 for *digest* under *scheme*.

    ECDSA: the leftmost field-size bytes of the hash (FIPS 186-4 §6.4), so a
    SHA-384 digest is cut for P-256 and a SHA-256 digest is used as is on P-384.
    RSA: the full modulus-length block, padded here.
    """
    scheme.check_digest(digest)
    if (scheme.family is Family.ECDSA) == algorithm.is_rsa:
        kind = "an RSA" if algorithm.is_rsa else "an EC"
        raise SchemeMismatch(f"{scheme.name} does not fit {kind} key")
    try:
        if scheme.family is Family.ECDSA:
            return signing.ecdsa_input(digest, algorithm.key_bits)
        if scheme.family is Family.PKCS1:
            return signing.pkcs1v15_block(digest, scheme.hash_name, algorithm.block_size)
        return signing.pss_block(digest, scheme.hash_name, algorithm.key_bits)
    except ValueError as exc:  # e.g. PSS-SHA512 needs a larger modulus than RSA-1024
        raise SchemeMismatch(f"{scheme.name} does not fit this key: {exc}") from None
