"""An OCSP responder for the PIV test CA (RFC 6960 over HTTP POST), for tests and demos.

It answers from the same revocation list as the CRL (``piv-ca-revoked.json``,
see :mod:`.piv_crl`), so ``hwgate-testbed revoke`` shows in both at once. The
responses are signed by the CA key itself (no delegated responder), responder
id by key hash, nextUpdate one hour ahead, the request's nonce echoed.
:class:`OcspServer` serves it on a loopback port in a thread of the caller.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from .piv_ca import PivCa
from .piv_crl import REVOKED_FILE

MAX_REQUEST = 64 * 1024
VALIDITY = dt.timedelta(hours=1)


def _revoked(pki_dir: Path) -> dict[str, Any]:
    path = pki_dir / REVOKED_FILE
    return dict(json.loads(path.read_text()).get("revoked", {})) if path.exists() else {}


def respond(pki_dir: Path, ca: PivCa, request_der: bytes, signer: PivCa | None = None) -> bytes:
    """The DER OCSP response to *request_der* (malformedRequest when it does not parse).

    *signer*: sign as this responder (responder id by name, its certificate
    included) instead of the CA: a delegated responder, or a forger in tests.
    """
    try:
        request = ocsp.load_der_ocsp_request(request_der)
    except ValueError:
        return _error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    expected = _issuer_hashes(ca, request.hash_algorithm)
    if (request.issuer_name_hash, request.issuer_key_hash) != expected:
        return _error(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    entry = _revoked(pki_dir).get(f"{request.serial_number:x}")
    if entry is None:
        status, when, reason = ocsp.OCSPCertStatus.GOOD, None, None
    else:
        status = ocsp.OCSPCertStatus.REVOKED
        when = dt.datetime.fromtimestamp(float(entry["at"]), dt.UTC).replace(microsecond=0)
        reason = x509.ReasonFlags[str(entry["reason"])]
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash, request.serial_number,
            request.hash_algorithm, status, now, now + VALIDITY, when, reason,
        )
    )  # fmt: skip
    if signer is None:
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca.certificate)
    else:
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, signer.certificate)
        builder = builder.certificates([signer.certificate])
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
        builder = builder.add_extension(nonce, critical=False)
    except x509.ExtensionNotFound:
        pass
    response = builder.sign((signer or ca).key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)


def _issuer_hashes(ca: PivCa, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) for our CA, computed by cryptography itself."""
    probe = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(ca.certificate, ca.certificate, algorithm)  # any cert issued by ca
        .build()
    )
    return probe.issuer_name_hash, probe.issuer_key_hash


def _error(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


class OcspServer:
    """:func:`respond` over HTTP on 127.0.0.1 (POST, ``application/ocsp-request``)."""

    def __init__(
        self, pki_dir: Path, ca: PivCa, port: int = 0, signer: PivCa | None = None
    ) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 < length <= MAX_REQUEST:
                    self.send_error(413 if length else 400)
                    return
                body = respond(outer.pki_dir, outer.ca, self.rfile.read(length), outer.signer)
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.pki_dir, self.ca, self.signer, self.requests = pki_dir, ca, signer, 0
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def __enter__(self) -> OcspServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
