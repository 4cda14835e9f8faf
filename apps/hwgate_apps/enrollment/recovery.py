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

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from hwgate.v1 import common_pb2, hsm_pb2

MAX_RECORD_BYTES = 64 * 1024


class RecoveryError(Exception):
    """No key can be recovered for this certificate (message safe to return)."""


@dataclass(frozen=True)
class Escrowed:
    """One escrow record: the wrapped key and what hwgated must be told about it."""

    wrapped_key: bytes
    key_algorithm: str  # hwgate's KeyAlgorithm name, e.g. "KEY_ALGORITHM_EC_P256"
    wrapping_key: str  # the HSM key it is wrapped under (label)


class EscrowSource(Protocol):
    """Where escrow records live (the card issuer's key-recovery database)."""

    def find(self, km_cert: x509.Certificate) -> Escrowed | None:
        """The record for the key certified by *km_cert*, or None."""
        ...


def _card_uuids(cert: x509.Certificate) -> list[str]:
    """The card UUIDs (urn:uuid SAN) of a card certificate, canonical form."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    found = []
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.lower().startswith("urn:uuid:"):
            try:
                found.append(str(uuid.UUID(uri[len("urn:uuid:") :])))
            except ValueError:
                continue
    return found


class EscrowDirectory:
    """Escrow records as JSON files named by card UUID (``<uuid>.json``), as the test bed's
    issuer writes them (hwgate_testbed.escrow): ``slot``, ``key_algorithm``,
    ``wrapping_key``, ``wrapped_key`` (base64) and the ``certificate`` (PEM) of the key.

    A record counts only for the very certificate it names: the card UUID finds the
    file, the certificate must then be the same (a re-keyed card's old record is not
    handed out for its new certificate, nor the other way round).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def find(self, km_cert: x509.Certificate) -> Escrowed | None:
        for card_uuid in _card_uuids(km_cert):
            path = self.directory / f"{card_uuid}.json"
            if not path.is_file() or path.stat().st_size > MAX_RECORD_BYTES:
                continue
            try:
                record = json.loads(path.read_text())
                escrowed_cert = x509.load_pem_x509_certificate(record["certificate"].encode())
                if escrowed_cert != km_cert or record.get("slot") != "9d":
                    continue
                return Escrowed(
                    wrapped_key=base64.b64decode(record["wrapped_key"], validate=True),
                    key_algorithm=str(record["key_algorithm"]),
                    wrapping_key=str(record["wrapping_key"]),
                )
            except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
                raise RecoveryError("the escrow record of this card is damaged") from None
        return None


class KeyRecovery:
    """Re-wrap escrowed keys for peers through hwgated (the enrollment role)."""

    def __init__(self, hsm: Any, escrow: EscrowSource, wrapping_key: str) -> None:
        self.hsm = hsm
        self.escrow = escrow
        self.wrapping_key = wrapping_key

    def rewrap_for_peer(self, km_cert: x509.Certificate, peer_der: bytes) -> dict[str, Any]:
        """The JSON the phone needs: wrapped key, HSM public key, KDF and mechanism names.

        hwgated's refusals (policy, a blob that does not unwrap, a bad peer key) come
        out as :class:`hwgate.HwgateError`, which the web layer reports."""
        escrowed = self.escrow.find(km_cert)
        if escrowed is None:
            raise RecoveryError("no escrowed key for this Key Management certificate")
        if escrowed.wrapping_key != self.wrapping_key:
            raise RecoveryError("the key is escrowed under another wrapping key")
        result = self.hsm.rewrap_for_peer(
            self.wrapping_key, escrowed.wrapped_key, escrowed.key_algorithm, peer_der
        )
        return {
            "wrapped_key": base64.b64encode(result.wrapped_key).decode(),
            "hsm_public_key": base64.b64encode(result.hsm_public_key).decode(),
            "kdf": hsm_pb2.TransportKdf.Name(result.kdf),
            "mechanism": hsm_pb2.WrapMechanism.Name(result.mechanism),
            "key_algorithm": common_pb2.KeyAlgorithm.Name(result.key_algorithm),
        }
