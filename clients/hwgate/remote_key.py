"""HSM keys as ``cryptography`` private keys, so existing code signs through hwgated.

``RemoteEcKey`` and ``RemoteRsaKey`` implement cryptography's
``EllipticCurvePrivateKey`` / ``RSAPrivateKey`` interfaces. ``sign()`` hashes
the message locally (or takes a ``Prehashed`` digest) and sends only the
digest to ``HsmService.Sign`` (Cloud KMS model); ``public_key()`` is the key
fetched once from ``GetPublicKey``. Certificate, CSR and CRL builders call
exactly these, so ``x509.CertificateBuilder().sign(key, hashes.SHA256())``
works unchanged. The private half never leaves the HSM: ``private_numbers``,
``private_bytes``, ``exchange`` and ``decrypt`` raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from hwgate.v1 import hsm_pb2

if TYPE_CHECKING:  # collections.abc.Buffer is Python 3.12+
    from typing_extensions import Buffer


class Signer(Protocol):
    """What a remote key needs from a client (``hwgate.Client`` is one)."""

    def sign(
        self, key: hsm_pb2.KeyRef, algorithm: str, *, digest: bytes = b"", data: bytes = b""
    ) -> bytes: ...

    def get_public_key(self, key: hsm_pb2.KeyRef) -> hsm_pb2.GetPublicKeyResponse: ...


_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def _digest(data: bytes, algorithm: Any) -> tuple[str, bytes]:
    """(hash name, digest): hash *data* here unless it is already a Prehashed digest."""
    if isinstance(algorithm, utils.Prehashed):
        hash_algorithm = algorithm._algorithm
        digest = data
    else:
        hash_algorithm = algorithm
        h = hashes.Hash(algorithm)
        h.update(data)
        digest = h.finalize()
    if hash_algorithm.name not in _HASHES:
        raise UnsupportedAlgorithm(f"hwgate signs with SHA-256/384/512, not {hash_algorithm.name}")
    return hash_algorithm.name, digest


def _no_private(*_args: object, **_kwargs: object) -> Any:
    raise TypeError("the private key never leaves the HSM")


class RemoteEcKey(ec.EllipticCurvePrivateKey):
    """An EC key in the HSM; see the module doc."""

    def __init__(self, signer: Signer, ref: hsm_pb2.KeyRef, public: ec.EllipticCurvePublicKey):
        self._signer, self.ref, self._public = signer, ref, public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm("only ECDSA")
        name, digest = _digest(bytes(data), signature_algorithm.algorithm)
        if name == "sha512":
            raise UnsupportedAlgorithm("hwgate has no ECDSA with SHA-512")
        return self._signer.sign(self.ref, f"ecdsa-{name}", digest=digest)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise UnsupportedAlgorithm("use Client.derive (ECDH inside the HSM)")

    private_numbers = _no_private
    private_bytes = _no_private

    def __copy__(self) -> RemoteEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> RemoteEcKey:
        return self


def _rsa_algorithm(pad: padding.AsymmetricPadding, name: str, digest_len: int) -> str:
    if isinstance(pad, padding.PKCS1v15):
        return f"rsa-pkcs1-{name}"
    if isinstance(pad, padding.PSS):
        mgf = pad.mgf
        salt = pad._salt_length
        same_mgf = isinstance(mgf, padding.MGF1) and mgf._algorithm.name == name
        salt_ok = salt is padding.PSS.DIGEST_LENGTH or salt == digest_len
        if same_mgf and salt_ok:
            return f"rsa-pss-{name}"
        raise UnsupportedAlgorithm("hwgate PSS uses MGF1 with the same hash and salt = hash length")
    raise UnsupportedAlgorithm(f"padding {pad.name} is not supported")


class RemoteRsaKey(rsa.RSAPrivateKey):
    """An RSA key in the HSM; see the module doc."""

    def __init__(self, signer: Signer, ref: hsm_pb2.KeyRef, public: rsa.RSAPublicKey):
        self._signer, self.ref, self._public = signer, ref, public

    def sign(
        self,
        data: Buffer,
        padding: padding.AsymmetricPadding,
        algorithm: Any,
    ) -> bytes:
        name, digest = _digest(bytes(data), algorithm)
        scheme = _rsa_algorithm(padding, name, len(digest))
        return self._signer.sign(self.ref, scheme, digest=digest)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise UnsupportedAlgorithm("hwgate does not decrypt")

    private_numbers = _no_private
    private_bytes = _no_private

    def __copy__(self) -> RemoteRsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> RemoteRsaKey:
        return self


def remote_key(signer: Signer, ref: hsm_pb2.KeyRef) -> RemoteEcKey | RemoteRsaKey:
    """The HSM key *ref* as a cryptography private key (its public key fetched now)."""
    public = serialization.load_der_public_key(signer.get_public_key(ref).der)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return RemoteEcKey(signer, ref, public)
    if isinstance(public, rsa.RSAPublicKey):
        return RemoteRsaKey(signer, ref, public)
    raise UnsupportedAlgorithm(f"{type(public).__name__} keys cannot sign through hwgate")


__all__ = ["RemoteEcKey", "RemoteRsaKey", "Signer", "remote_key"]
