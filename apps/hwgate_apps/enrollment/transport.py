"""HTTPS for the enrollment server, with the TLS client certificate in each request.

Kiosks and administrators present client certificates; the phone, which has
none, redeems its activation code on the same port. So the server asks for a
certificate without demanding one (``CERT_OPTIONAL``): OpenSSL still refuses
the handshake of a certificate that does not chain to ``client_ca`` or lacks
the clientAuth purpose, and each route then decides whether the identity it
got is enough (:mod:`.peers`).

uvicorn does not hand the peer certificate to the app, so the HTTP protocol
below (one instance per connection) reads it from the SSL object once the
handshake is done and adds it to every request of that connection as the
ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``, PEM).
A server that implements the extension itself fills the same field.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from hwgate_apps.enrollment.config import EnrollmentConfig


def _tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, adding the connection's client certificate to each scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = _tls_extension(transport)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
            await inner(scope, receive, send)

        self.app = app


def server_tls(config: EnrollmentConfig, certfile: str, keyfile: str) -> dict[str, Any]:
    """uvicorn options: HTTPS with *certfile*, client certificates from ``client_ca``."""
    options: dict[str, Any] = {"ssl_certfile": certfile, "ssl_keyfile": keyfile}
    if config.client_ca is not None:
        options.update(
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            ssl_ca_certs=str(config.client_ca),
            http=PeerCertProtocol,
        )
    return options
