"""The issuing CA's CRL: built here, signed in the HSM through hwgated, kept in the store.

Derived certificates name ``GET /crl/issuing-ca.crl`` as their CRL
distribution point (``crl_url``); relying parties and the phone read it there.
The CRL is signed by ``issuing-ca`` exactly as :mod:`.issuer` signs
certificates: ``cryptography``'s CRL builder with the remote key, so only the
digest goes to the HSM.

A new CRL (next CRL number) is made whenever a derived certificate is revoked
and when the stored one is within ``REFRESH_BEFORE`` of its nextUpdate; every
server instance serves the newest CRL in the shared store. Two instances making
the same number at once: the first insert wins, the second serves the winner's.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from hwgate_apps.enrollment import lifestore

if TYPE_CHECKING:
    from hwgate_apps.enrollment.store import Store

ISSUER_ID = "issuing-ca"  # the store's key for this CA's CRLs (the path's file name)
BACKDATE = dt.timedelta(minutes=5)


class CrlPublisher:
    """Makes and serves the issuing CA's CRL."""

    def __init__(
        self, store: Store, ca_cert: x509.Certificate, ca_key: Any, validity: dt.timedelta
    ) -> None:
        self.store = store
        self.ca_cert = ca_cert
        self._ca_key = ca_key  # a callable returning the remote key (fetched lazily)
        self.validity = validity
        self._lock = threading.Lock()

    @property
    def refresh_before(self) -> float:
        return self.validity.total_seconds() / 2

    def current(self) -> bytes:
        """The newest CRL (DER); a new one first if none exists or it is due for refresh."""
        latest = lifestore.latest_crl(self.store, ISSUER_ID)
        if latest is not None and latest[2] - time.time() > self.refresh_before:
            return latest[1]
        return self.publish()

    def publish(self) -> bytes:
        """Sign a CRL of every revoked derived certificate with the next number; store it."""
        with self._lock:
            for _ in range(3):
                number = lifestore.next_crl_number(self.store, ISSUER_ID)
                der, this, nxt = self._build(number)
                if lifestore.add_crl(self.store, ISSUER_ID, number, der, this, nxt):
                    return der
            latest = lifestore.latest_crl(self.store, ISSUER_ID)
            assert latest is not None  # someone else inserted: serve theirs
            return latest[1]

    def _build(self, number: int) -> tuple[bytes, float, float]:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        ski = self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca_cert.subject)
            .last_update(now - BACKDATE)
            .next_update(now + self.validity)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
        )
        for serial, at, reason in lifestore.revoked_serials(self.store):
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial.replace(":", ""), 16))
                .revocation_date(dt.datetime.fromtimestamp(at, dt.UTC).replace(microsecond=0))
            )
            if reason != "unspecified":  # RFC 5280 5.3.1: omit rather than say unspecified
                flag = x509.ReasonFlags[reason]
                entry = entry.add_extension(x509.CRLReason(flag), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(self._ca_key(), hashes.SHA256())
        der = crl.public_bytes(serialization.Encoding.DER)
        return der, (now - BACKDATE).timestamp(), (now + self.validity).timestamp()
