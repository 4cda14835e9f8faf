"""The on-disk layout of a test bed directory.

Every file the test bed reads or writes is named here and nowhere else, so the
CLI, the pytest plugin, the benchmarks and the docs cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path(".testbed")
TOKEN_LABEL = "hwgate-testbed"
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
VPCD_BASE_PORT = 35963
VPCD_READER_PREFIX = "Virtual PCD"
PIV_PIN = "123456"
PIV_PUK = "12345678"
DEFAULT_CARDS: dict[str, str] = {"alice": "ecc", "bob": "rsa"}
PKI_CLIENTS = ("kiosk", "enrollment", "admin")
TCP_LISTEN = "127.0.0.1:7443"


def vpcd_port(slot: int) -> int:
    """TCP port where vpcd waits for the card of reader `slot`."""
    return VPCD_BASE_PORT + slot


def vpcd_reader(slot: int) -> str:
    """PC/SC reader name that vpcd gives to `slot` (one reader per vpcd port)."""
    return f"{VPCD_READER_PREFIX} 00 {slot:02d}"


@dataclass(frozen=True)
class TestbedPaths:
    """Absolute paths of everything under one test bed directory."""

    __test__ = False  # not a pytest test class despite the name

    root: Path

    @classmethod
    def at(cls, directory: Path | str) -> TestbedPaths:
        """Layout rooted at `directory`, made absolute (files record absolute paths)."""
        return cls(Path(directory).expanduser().resolve())

    # pcscd (only when this test bed started it)
    @property
    def pcscd_pid(self) -> Path:
        return self.root / "pcscd.pid"

    @property
    def pcscd_log(self) -> Path:
        return self.root / "pcscd.log"

    # SoftHSM2 token
    @property
    def softhsm_conf(self) -> Path:
        return self.root / "softhsm2.conf"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def user_pin(self) -> Path:
        return self.root / "token-user.pin"

    @property
    def so_pin(self) -> Path:
        return self.root / "token-so.pin"

    # PKI: mTLS test PKI and the PIV card CA share the directory
    @property
    def pki(self) -> Path:
        return self.root / "pki"

    def pki_cert(self, name: str) -> Path:
        return self.pki / f"{name}.pem"

    def pki_key(self, name: str) -> Path:
        return self.pki / f"{name}.key"

    # virtual cards and the slots they are inserted in
    @property
    def cards(self) -> Path:
        return self.root / "cards"

    def card_dir(self, name: str) -> Path:
        return self.cards / name

    @property
    def slots(self) -> Path:
        return self.root / "slots"

    def slot_pid(self, slot: int) -> Path:
        return self.slots / f"{slot}.pid"

    def slot_card(self, slot: int) -> Path:
        """Name of the card in `slot` (written next to the pid file)."""
        return self.slots / f"{slot}.card"

    def slot_log(self, slot: int) -> Path:
        return self.slots / f"{slot}.log"

    # key escrow: each card's Key Management (9D) key wrapped under the token's escrow-kek
    @property
    def escrow(self) -> Path:
        return self.root / "escrow"

    def escrow_file(self, guid: str) -> Path:
        """The escrow record of the card whose CHUID GUID (card UUID) is *guid*."""
        return self.escrow / f"{guid}.json"

    # daemon-facing files
    @property
    def env_file(self) -> Path:
        return self.root / "testbed.env"

    @property
    def daemon_config(self) -> Path:
        return self.root / "hwgated.toml"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def kiosk_socket(self) -> Path:
        return self.root / "hwgate.sock"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"
