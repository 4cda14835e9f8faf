"""The CHUID issuer signature (tag 3E): a detached CMS SignedData by the test CA.

SP 800-73-4 wants eContentType id-PIV-CHUIDSecurityObject, which
``cryptography``'s PKCS#7 builder cannot set (it always signs id-data), so the
structure is assembled with asn1crypto (already installed with python-pkcs11).
"""

from __future__ import annotations

import datetime as dt
import hashlib

from asn1crypto import algos, cms, core
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .piv_ca import PivCa

ID_PIV_CHUID_SECURITY_OBJECT = "2.16.840.1.101.3.6.1"


def sign_chuid(content: bytes, ca: PivCa, now: dt.datetime | None = None) -> bytes:
    """DER ContentInfo(SignedData) over *content* (the CHUID TLVs without 3E and FE)."""
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [ID_PIV_CHUID_SECURITY_OBJECT]}),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(content).digest()]}
            ),
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time({"utc_time": now or _now()})]}
            ),
        ]
    )
    signature = ca.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    ca_cert = ax509.Certificate.load(ca.certificate.public_bytes(serialization.Encoding.DER))
    signer = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": ca_cert.issuer, "serial_number": ca_cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": core.OctetString(signature),
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": ID_PIV_CHUID_SECURITY_OBJECT},
            "certificates": [ca_cert],
            "signer_infos": [signer],
        }
    )
    info = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return bytes(info.dump())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
