"""The PIV test CA's certificate revocation list, and revoking a test card.

Published as ``DIR/pki/piv-ca.crl`` (DER), signed by the PIV test CA. The
list of revoked serials is kept next to it in ``piv-ca-revoked.json``; every
change re-signs the whole CRL with the next CRL number. Relying parties (the
enrollment server) read the file by path or ``file://`` URL, or over HTTP when
something serves the pki directory (the enrollment tests do).

``unrevoke`` exists only so a test can put the bed back as it found it (a real
CA cannot take a revocation back except from certificateHold).

Concurrent writers (two ``hwgate-testbed revoke`` at once) are serialized by an
``flock`` on ``piv-ca.crl.lock``; readers see either the old or the new file
(written to a temporary name, then renamed).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .piv_ca import PivCa
from .profile import CardProfile

CRL_FILE = "piv-ca.crl"
REVOKED_FILE = "piv-ca-revoked.json"
LOCK_FILE = "piv-ca.crl.lock"
CRL_VALIDITY = dt.timedelta(days=30)
REFRESH_BEFORE = dt.timedelta(days=15)  # `up` re-signs a CRL with less than this left


def crl_path(pki_dir: Path) -> Path:
    return pki_dir / CRL_FILE


@contextmanager
def _locked(pki_dir: Path) -> Iterator[None]:
    pki_dir.mkdir(parents=True, exist_ok=True)
    with open(pki_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _state(pki_dir: Path) -> dict[str, object]:
    path = pki_dir / REVOKED_FILE
    if not path.exists():
        return {"number": 0, "revoked": {}}
    return dict(json.loads(path.read_text()))


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _publish(pki_dir: Path, ca: PivCa, state: dict[str, object]) -> Path:
    """Sign and write the CRL for *state* with the next CRL number."""
    number = int(state["number"]) + 1  # type: ignore[call-overload]
    state["number"] = number
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.name)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    revoked: dict[str, dict[str, object]] = state["revoked"]  # type: ignore[assignment]
    for serial_hex, entry in sorted(revoked.items()):
        when = dt.datetime.fromtimestamp(float(entry["at"]), dt.UTC)  # type: ignore[arg-type]
        reason = x509.ReasonFlags[str(entry["reason"])]
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial_hex, 16))
            .revocation_date(when)
            .add_extension(x509.CRLReason(reason), critical=False)
            .build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    _write(pki_dir / REVOKED_FILE, json.dumps(state, indent=1).encode())
    out = crl_path(pki_dir)
    _write(out, crl.public_bytes(serialization.Encoding.DER))
    return out


def ensure_crl(pki_dir: Path, ca: PivCa) -> Path:
    """The published CRL; (re-)signed if missing or within REFRESH_BEFORE of its nextUpdate."""
    with _locked(pki_dir):
        path = crl_path(pki_dir)
        if path.exists():
            crl = x509.load_der_x509_crl(path.read_bytes())
            due = crl.next_update_utc
            if due is not None and due - dt.datetime.now(dt.UTC) > REFRESH_BEFORE:
                return path
        return _publish(pki_dir, ca, _state(pki_dir))


def card_serials(card_dir: Path) -> list[int]:
    """The serial numbers of every certificate of the card in *card_dir*."""
    profile = CardProfile.load(card_dir)
    return [cred.certificate.serial_number for cred in profile.slots.values()]


def revoke(pki_dir: Path, ca: PivCa, serials: list[int], reason: str = "key_compromise") -> Path:
    """Add *serials* to the CRL (reason: an ``x509.ReasonFlags`` name) and re-publish."""
    if reason not in x509.ReasonFlags.__members__:  # before touching anything
        raise ValueError(f"unknown CRL reason {reason!r}")
    with _locked(pki_dir):
        state = _state(pki_dir)
        revoked: dict[str, object] = state.setdefault("revoked", {})  # type: ignore[assignment]
        now = dt.datetime.now(dt.UTC).timestamp()
        for serial in serials:
            revoked.setdefault(f"{serial:x}", {"at": now, "reason": reason})
        return _publish(pki_dir, ca, state)


def unrevoke(pki_dir: Path, ca: PivCa, serials: list[int]) -> Path:
    """Take *serials* off the CRL again (test clean-up only) and re-publish."""
    with _locked(pki_dir):
        state = _state(pki_dir)
        revoked: dict[str, object] = state.setdefault("revoked", {})  # type: ignore[assignment]
        for serial in serials:
            revoked.pop(f"{serial:x}", None)
        return _publish(pki_dir, ca, state)
