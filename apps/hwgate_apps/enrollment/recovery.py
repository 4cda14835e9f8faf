"""Key recovery: the cardholder's escrowed Key Management (9D) key, re-wrapped by
hwgated for the phone's ephemeral key.

The server never sees the key: it finds the escrow record of the card's 9D
certificate (the blob the card issuer wrapped under the HSM's escrow key at
provisioning) and hands it to ``HsmService.RewrapForPeer``, which unwraps it,
agrees a transport key with the phone's public key and wraps it again, all in
one HSM worker. The phone gets the re-wrapped blob and the HSM's ephemeral
public key, and only it can unwrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509


class RecoveryError(Exception):
    """No key can be recovered for this certificate (message safe to return)."""


@dataclass(frozen=True)
class Escrowed:
    """One escrow record: the wrapped key and what hwgated must be told about it."""

    wrapped_key: bytes
    key_algorithm: str  # hwgate's KeyAlgorithm name, e.g. "EC_P256", "RSA_2048"


class EscrowSource(Protocol):
    """Where escrow records live (the card issuer's key-recovery database)."""

    def find(self, km_cert: x509.Certificate) -> Escrowed | None:
        """The record for the key certified by *km_cert*, or None."""
        ...


class KeyRecovery:
    """Re-wrap escrowed keys for peers through hwgated (the enrollment role)."""

    def __init__(self, hsm: Any, escrow: EscrowSource, wrapping_key: str) -> None:
        self.hsm = hsm
        self.escrow = escrow
        self.wrapping_key = wrapping_key

    def rewrap_for_peer(self, km_cert: x509.Certificate, peer_der: bytes) -> dict[str, Any]:
        """The JSON the phone needs: wrapped key, HSM public key, KDF and mechanism names."""
        raise RecoveryError("key recovery is not wired yet")
