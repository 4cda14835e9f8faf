"""Who is calling: the TLS client certificate → role (kiosk, admin), and the audit.

Routes name the role they need (:data:`KIOSK`, :data:`ADMIN`, or
:data:`PUBLIC` for the phone's code redemption, which the activation code
authenticates). A certificate's identities are its SAN URIs and its subject as
an RFC 4514 string; a configured identity matches one exactly, or by prefix
when it ends in ``*`` (``spiffe://hwgate.test/kiosk/*``): linear, no
patterns a caller controls.

Every refusal is written to the audit logger (``hwgate_apps.enrollment.audit``)
as one JSON object: the route, the role needed and the peer's certificate
identity (subject, SAN URIs, serial, issuer) and address. Never a body, a
query string or a header: those may hold codes and personal data. Allowed admin
requests are audited too (who listed or revoked what).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from starlette.requests import Request

from hwgate.certfmt import serial_hex
from hwgate_apps.enrollment.config import EnrollmentConfig
from hwgate_apps.web import ApiError

KIOSK = "kiosk"
ADMIN = "admin"
PUBLIC = "public"
audit = logging.getLogger("hwgate_apps.enrollment.audit")


@dataclass(frozen=True)
class Peer:
    """The certificate a client presented (already verified by the TLS handshake)."""

    subject: str
    uris: tuple[str, ...]
    serial: str
    issuer: str

    @property
    def identities(self) -> tuple[str, ...]:
        return (*self.uris, self.subject)


def peer_of(scope: Mapping[str, Any]) -> Peer | None:
    """The client certificate of the request's connection (ASGI TLS extension), if any."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    cert = x509.load_pem_x509_certificate(chain[0].encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        uris = ()
    return Peer(
        subject=cert.subject.rfc4514_string(),
        uris=uris,
        serial=serial_hex(cert.serial_number),
        issuer=cert.issuer.rfc4514_string(),
    )


def matches(identities: Sequence[str], allowed: Sequence[str]) -> bool:
    """Whether one of *identities* is in *allowed* (a trailing ``*`` is a prefix match)."""
    for rule in allowed:
        if rule.endswith("*"):
            if any(i.startswith(rule[:-1]) for i in identities):
                return True
        elif rule in identities:
            return True
    return False


def allowed_identities(config: EnrollmentConfig, role: str) -> tuple[str, ...]:
    return {KIOSK: config.kiosk_identities, ADMIN: config.admin_identities}.get(role, ())


def authorize(request: Request, role: str, config: EnrollmentConfig) -> Peer | None:
    """The caller's certificate if it has *role*; ApiError 401/403 (audited) if not."""
    if role == PUBLIC:
        return None
    peer = peer_of(request.scope)
    if peer is None:
        _audit(request, role, None, "refused: no client certificate")
        raise ApiError(401, "client_certificate_required",
                       f"this request needs a {role} client certificate")  # fmt: skip
    if not matches(peer.identities, allowed_identities(config, role)):
        _audit(request, role, peer, f"refused: not a known {role}")
        raise ApiError(403, "not_authorized", f"this certificate is not a known {role}")
    if role == ADMIN:
        _audit(request, role, peer, "allowed")
    return peer


def _audit(request: Request, role: str, peer: Peer | None, outcome: str) -> None:
    client = request.client
    record = {
        "event": "enrollment_access",
        "outcome": outcome,
        "role_needed": role,
        "method": request.method,
        "path": request.url.path,  # no query string: it may carry personal data
        "peer": asdict(peer) if peer else None,
        "address": f"{client.host}:{client.port}" if client else None,
    }
    level = logging.INFO if outcome == "allowed" else logging.WARNING
    audit.log(level, "%s", json.dumps(record, sort_keys=True))
