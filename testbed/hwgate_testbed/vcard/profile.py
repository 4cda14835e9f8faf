"""What a virtual PIV card *is*: identity, PIN/PUK, keys and certificates.

A profile lives in its own directory (``card.json`` plus one key PEM and one
certificate PEM per slot) so a card can be provisioned once and then inserted
(served) many times; every insert starts from what is on disk.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import date
from enum import IntEnum
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .fascn import Fascn

KeyType = Literal["rsa", "ecc"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

PROFILE_FILE = "card.json"


class Slot(IntEnum):
    """PIV key references the virtual card holds keys for."""

    AUTHENTICATION = 0x9A
    SIGNATURE = 0x9C
    KEY_MANAGEMENT = 0x9D
    CARD_AUTH = 0x9E


@dataclass
class SlotCredential:
    """A key pair and the certificate for its public half."""

    key: PrivateKey
    certificate: x509.Certificate


@dataclass
class CardProfile:
    """Everything needed to serve one card; PIN/PUK are test values, stored in clear."""

    name: str
    key_type: KeyType
    fascn: Fascn
    guid: uuid.UUID
    expiry: date
    pin: str = "123456"
    puk: str = "12345678"
    pin_retries: int = 3
    puk_retries: int = 3
    slots: dict[Slot, SlotCredential] = field(default_factory=dict)
    chuid_signature: bytes = b""  # CMS SignedData over the CHUID, or empty
    compressed_slots: frozenset[Slot] = frozenset()  # certs stored gzip'd (CertInfo 01)

    def __post_init__(self) -> None:
        """SP 800-73-4 part 2 §2.4.3: the PIN is 6-8 ASCII digits, the PUK exactly 8 bytes
        (never padded: a shorter PUK would be no PUK a real card could hold)."""
        if not (6 <= len(self.pin) <= 8 and self.pin.isascii() and self.pin.isdigit()):
            raise ValueError("the PIN must be 6 to 8 ASCII digits")
        if len(self.puk.encode()) != 8:
            raise ValueError("the PUK must be 8 bytes")
        if not (0 < self.pin_retries <= 15 and 0 < self.puk_retries <= 15):
            raise ValueError("retry counters must be 1 to 15 (one 63Cx nibble)")

    def save(self, card_dir: Path) -> None:
        """Write card.json and the slot PEM files; private keys are mode 0600."""
        card_dir.mkdir(parents=True, exist_ok=True)
        for slot, cred in self.slots.items():
            _write_private(card_dir / _key_file(slot), _key_pem(cred.key))
            cert_pem = cred.certificate.public_bytes(serialization.Encoding.PEM)
            (card_dir / _cert_file(slot)).write_bytes(cert_pem)
        _write_private(card_dir / PROFILE_FILE, json.dumps(self._to_json(), indent=2).encode())

    @classmethod
    def load(cls, card_dir: Path) -> CardProfile:
        """Read a profile written by :meth:`save`."""
        doc = json.loads((card_dir / PROFILE_FILE).read_text())
        slots = {}
        for hex_slot in doc["slots"]:
            slot = Slot(int(hex_slot, 16))
            key = serialization.load_pem_private_key(
                (card_dir / _key_file(slot)).read_bytes(), password=None
            )
            if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                raise ValueError(f"unsupported key type in slot {slot:02X}")
            cert = x509.load_pem_x509_certificate((card_dir / _cert_file(slot)).read_bytes())
            slots[slot] = SlotCredential(key, cert)
        return cls(
            name=doc["name"],
            key_type=doc["key_type"],
            fascn=Fascn(**doc["fascn"]),
            guid=uuid.UUID(doc["guid"]),
            expiry=date.fromisoformat(doc["expiry"]),
            pin=doc["pin"],
            puk=doc["puk"],
            pin_retries=doc["pin_retries"],
            puk_retries=doc["puk_retries"],
            slots=slots,
            chuid_signature=base64.b64decode(doc["chuid_signature"]),
            compressed_slots=frozenset(Slot(int(s, 16)) for s in doc["compressed_slots"]),
        )

    def _to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "key_type": self.key_type,
            "fascn": {k: getattr(self.fascn, k) for k in self.fascn.__dataclass_fields__},
            "guid": str(self.guid),
            "expiry": self.expiry.isoformat(),
            "pin": self.pin,
            "puk": self.puk,
            "pin_retries": self.pin_retries,
            "puk_retries": self.puk_retries,
            "slots": [f"{slot:02x}" for slot in self.slots],
            "chuid_signature": base64.b64encode(self.chuid_signature).decode(),
            "compressed_slots": sorted(f"{slot:02x}" for slot in self.compressed_slots),
        }


def _key_file(slot: Slot) -> str:
    return f"slot-{slot:02x}.key.pem"


def _cert_file(slot: Slot) -> str:
    return f"slot-{slot:02x}.cert.pem"


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Create or replace *path* with mode 0600 (it holds keys or the PIN)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
