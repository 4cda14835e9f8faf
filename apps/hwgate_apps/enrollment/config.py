"""Enrollment server settings (TOML file or keyword arguments).

Every relying-party decision the server makes is configured here, so the
tests and the demo run the same code with different numbers.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from hwgate_apps.enrollment.db import database_url

POLICY_DERIVED_PIV_AUTH = "2.16.840.1.101.3.2.1.3.40"
POLICY_DERIVED_PIV_AUTH_HARDWARE = "2.16.840.1.101.3.2.1.3.41"


@dataclass(frozen=True)
class EnrollmentConfig:
    """Where things are and the limits the server enforces."""

    # Our own origin, RFC 6454 ("https://host:port"): the one proofs must be bound to.
    origin: str
    # The database: an SQLite file path, or a URL: sqlite:///abs/path, sqlite:rel/path,
    # postgresql://user@host/db or postgresql:///db?host=/socket/dir (see .db).
    database: Path | str
    # PIV card issuer CA (the cards' PIV Authentication certificates chain to it).
    piv_issuer_ca: Path
    # The HSM issuing CA's certificate (DIR/pki/issuing-ca.pem); its key is `issuing_key`.
    issuing_ca_cert: Path
    # hwgated over mTLS with the enrollment role.
    hwgate_target: str
    hwgate_cacert: Path
    hwgate_cert: Path
    hwgate_key: Path
    # HSM keys by label.
    issuing_key: str = "issuing-ca"
    activation_key: str = "hmac-key"
    # Public URL the phone uses (QR payload); defaults to `origin`.
    public_url: str = ""
    # Challenge lifetime and activation-code policy.
    challenge_ttl: float = 120.0
    code_ttl: float = 600.0
    code_attempts: int = 5
    # Derived credentials per cardholder (FASC-N) that are not revoked.
    max_credentials_per_cardholder: int = 3
    # Derived certificate lifetime cap (days); never past the PIV Auth cert or 3 years.
    derived_validity_days: int = 365
    # .40 (AAL2, software key) by default: the phone simulator's key is a software key.
    policy_oid: str = POLICY_DERIVED_PIV_AUTH
    # Optional AIA / CRL locations for the FPKI profile (omitted when empty).
    ca_issuers_url: str = ""
    ocsp_url: str = ""
    crl_url: str = ""
    # RFC 8628 device sign-in: registered public clients (client_id -> name shown at the
    # kiosk), code lifetime, polling interval (s), where people go (default ORIGIN/device),
    # and user-code attempts per window: per kiosk address and over all kiosks.
    device_clients: dict[str, str] = field(default_factory=lambda: {"hwgate-phone": "hwgate phone"})
    device_code_ttl: float = 600.0
    device_poll_interval: int = 5
    device_verification_uri: str = ""
    user_code_window: int = 300
    user_code_attempts_per_client: int = 20
    user_code_attempts_global: int = 200
    # S/MIME signing certificates (see smime.py for the sources): id-fpki-common-policy
    # for a software key (the phone simulator's); id-fpki-common-hardware (.7) for hardware.
    smime_policy_oid: str = "2.16.840.1.101.3.2.1.3.6"
    # Key recovery: the escrow records of the cards' 9D keys (empty: no recovery) and
    # the HSM key they are wrapped under.
    escrow_dir: str = ""
    escrow_wrapping_key: str = "escrow-kek"
    # --- lifecycle: revocation, CRL, notices (see revocation.py, lifecycle.py, outbox.py) ---
    # The PIV issuer's CRL (http(s)://, file:// or a path); empty: the card certificate's
    # own CRL distribution points.
    piv_crl_url: str = ""
    # The PIV issuer's OCSP responder (asked before the CRL); empty: the certificate's AIA.
    piv_ocsp_url: str = ""
    # Refuse a card whose revocation status cannot be established (fail closed).
    require_revocation_status: bool = True
    crl_cache_seconds: float = 60.0
    # nextUpdate of the issuing CA's CRL (GET /crl/issuing-ca.crl), from its thisUpdate.
    issuing_crl_hours: float = 24.0
    # Seconds between lifecycle runs inside the server; 0: only `hwgate-enrollment lifecycle`.
    lifecycle_interval: float = 0.0
    # E-mail notices: none unless smtp_host is set.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_cafile: str = ""
    smtp_username: str = ""
    smtp_password_file: str = ""
    mail_from: str = "hwgate enrollment <enrollment@localhost>"
    # Outbox worker: polling interval, and the first retry delay (doubles per attempt).
    outbox_interval: float = 5.0
    outbox_retry: float = 30.0
    # Kiosks and administrators authenticate with TLS client certificates issued by
    # `client_ca`; a certificate's identities (SAN URIs, its subject as an RFC 4514
    # string) are matched against these lists, "*" at the end matching a prefix.
    # Unset or empty: nobody has the role (the phone's code redemption needs none).
    client_ca: Path | None = None
    kiosk_identities: tuple[str, ...] = ()
    admin_identities: tuple[str, ...] = ()

    @property
    def qr_base(self) -> str:
        return (self.public_url or self.origin).rstrip("/")

    @property
    def verification_uri(self) -> str:
        return self.device_verification_uri or f"{self.qr_base}/device"


def load_config(path: Path) -> EnrollmentConfig:
    """Read a TOML file with the field names above; relative paths are to the file."""
    data = tomllib.loads(path.read_text())
    known = {f.name: f for f in fields(EnrollmentConfig)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    for name, value in list(data.items()):
        if known[name].type in ("Path", Path, "Path | None"):
            data[name] = (path.parent / value).resolve()
        elif isinstance(value, list):
            data[name] = tuple(value)
    if "database" in data:
        data["database"] = database_url(data["database"], path.parent)
    return EnrollmentConfig(**data)
