"""Checks the S/MIME tests share: the signing certificate's profile, and openssl as the
independent tool (verify -purpose smimesign, cms -encrypt, cms -sign/-verify)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID


def assert_signing_profile(cert: x509.Certificate, emails: list[str], policy: str) -> None:
    """FPKI worksheet 7 + RFC 8550: what a derived S/MIME signing certificate must say."""
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not (ku.value.key_encipherment or ku.value.key_agreement or ku.value.key_cert_sign)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical and ExtendedKeyUsageOID.EMAIL_PROTECTION in eku.value
    assert ExtendedKeyUsageOID.CLIENT_AUTH not in eku.value
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == emails
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == []
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [policy]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=3 * 365 + 1)


def openssl_verify_smimesign(ca: Path, leaf: Path) -> None:
    """``openssl verify -purpose smimesign`` accepts *leaf* under *ca*; smimeencrypt does not
    (a signing certificate must not be an encryption one)."""
    ok = subprocess.run(["openssl", "verify", "-purpose", "smimesign", "-CAfile", str(ca),
                         str(leaf)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stdout + ok.stderr
    no = subprocess.run(["openssl", "verify", "-purpose", "smimeencrypt", "-CAfile", str(ca),
                         str(leaf)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert no.returncode != 0, no.stdout


def openssl_encrypt(recipient: Path, message: bytes, tmp: Path, *options: str) -> bytes:
    """``openssl cms -encrypt`` of *message* to the certificate file *recipient*
    (*options* follow ``-recip``, where ``-keyopt`` must be)."""
    (tmp / "mail.txt").write_bytes(message)
    out = tmp / "mail.p7m"
    done = subprocess.run(["openssl", "cms", "-encrypt", "-in", str(tmp / "mail.txt"),
                           "-out", str(out), "-recip", str(recipient), *options],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def openssl_sign_and_verify(cert: Path, key: Path, ca: Path, tmp: Path) -> None:
    """Sign a mail with ``openssl cms -sign`` and the phone's key, and verify it with
    ``openssl cms -verify`` (purpose smimesign) against *ca*: the certificate works."""
    (tmp / "signed-mail.txt").write_bytes(b"Subject: signed\r\n\r\nsigned on the phone\r\n")
    sign = subprocess.run(["openssl", "cms", "-sign", "-in", str(tmp / "signed-mail.txt"),
                           "-signer", str(cert), "-inkey", str(key),
                           "-out", str(tmp / "signed.p7m")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert sign.returncode == 0, sign.stderr
    check = subprocess.run(["openssl", "cms", "-verify", "-purpose", "smimesign",
                            "-in", str(tmp / "signed.p7m"), "-CAfile", str(ca),
                            "-out", str(tmp / "verified.txt")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0 and "Verification successful" in check.stderr, check.stderr
