"""The names in an mTLS peer's certificate, each kept with its type.

Why not gRPC's ``x509_subject_alternative_name`` auth property: it merges DNS,
e-mail, URI and IP SANs into one list of strings, so a certificate whose DNS or
e-mail SAN reads ``spiffe://hwgate.test/admin`` matched a ``san_uri`` rule and got
the admin role (issue 14). The certificate itself (``x509_pem_cert``) is parsed
here, and only URI SANs are URIs; the CN is the subject's commonName.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class PeerNames:
    """The URI SANs and subject CNs of a verified client certificate."""

    uris: frozenset[str] = frozenset()
    cns: frozenset[str] = frozenset()


NO_NAMES = PeerNames()


@functools.lru_cache(maxsize=256)
def parse_peer_names(pem: bytes) -> PeerNames:
    """URI SANs and CNs of one PEM certificate; NO_NAMES when it cannot be parsed.

    Cached: a client presents the same certificate on every call of a connection.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return NO_NAMES
    cns = frozenset(
        str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return PeerNames(frozenset(), cns)  # no (well-formed) SAN: no URI to trust
    return PeerNames(frozenset(san.get_values_for_type(x509.UniformResourceIdentifier)), cns)


def peer_names(auth_context: Mapping[str, Iterable[bytes]]) -> PeerNames:
    """The names of the peer certificate in a gRPC auth context (NO_NAMES without one)."""
    pem = next(iter(auth_context.get("x509_pem_cert", ())), None)
    return parse_peer_names(bytes(pem)) if pem else NO_NAMES
