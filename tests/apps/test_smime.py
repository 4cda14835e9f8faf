"""Derived S/MIME credentials on the real stack: kiosk, enrollment server, hwgated, phone.

The card's 9C/9D certificates travel from the kiosk to the server at enrollment;
the phone, holding its derived PIV Authentication credential, gets an S/MIME
signing certificate signed by the HSM issuing CA through hwgated (checked with
``cryptography`` and with openssl), and the card's Key Management key
re-wrapped by hwgated for its ephemeral key, which opens mail ``openssl cms
-encrypt`` sent to the card's 9D certificate.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps_support import PIN, enroll_post, kiosk_client, kiosk_post, on, proof_for, wait_screen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from smime_support import (
    assert_signing_profile,
    openssl_encrypt,
    openssl_sign_and_verify,
    openssl_verify_smimesign,
)

from hwgate.v1 import piv_pb2
from hwgate_apps.enrollment.smime import POLICY_COMMON_POLICY
from hwgate_apps.phone.cms import decrypt
from hwgate_apps.phone.smime import SmimeCredential, get_smime, smime_request
from hwgate_apps.phone.wallet import ActivationError, Credential, activate, make_csr, parse_payload
from hwgate_apps.stack import Stack
from hwgate_apps.web import tls_context
from hwgate_testbed.cards import ensure_card
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard.profile import CardProfile, Slot
from support.logscan import register_log, register_secret

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)
EMAIL_SLOTS = {piv_pb2.SLOT_DIGITAL_SIGNATURE: "9c", piv_pb2.SLOT_KEY_MANAGEMENT: "9d"}


@pytest.fixture(scope="module", autouse=True)
def server_log(stack: Stack) -> Iterator[Path]:
    """The apps' own log lines in a file the end-of-session secret scan reads (with the
    daemon's log and audit file, which lie where the scan would not look by itself)."""
    path = stack.workdir / "apps.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("hwgate_apps")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    register_log(path)
    register_log(stack.workdir / "hwgated.log")
    register_log(stack.paths.audit_log)  # RewrapForPeer is audited: no key bytes there either
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def register_key(key: Any) -> None:
    """Have the secret scan look for *key*: its private value, and its PKCS#8 DER in
    48-byte pieces (one PEM line each, so a PEM dump in a log is found too)."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    for i in range(0, len(der), 48):
        register_secret(der[i : i + 48])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        register_secret(key.private_numbers().private_value.to_bytes(32, "big"))


def _anchor(stack: Stack) -> x509.Certificate:
    return x509.load_pem_x509_certificate(stack.paths.pki_cert("issuing-ca").read_bytes())


def _card_emails(stack: Stack, reader: str) -> tuple[dict[str, bytes], list[str]]:
    """The card's 9C/9D certificates (DER) and their e-mail addresses, read at the reader."""
    with kiosk_client(stack) as client:
        info = client.get_card_info(reader)
    certs = {EMAIL_SLOTS[c.slot]: c.der for c in info.certificates if c.slot in EMAIL_SLOTS}
    emails: list[str] = []
    for der in certs.values():
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        emails += [e for e in san.value.get_values_for_type(x509.RFC822Name) if e not in emails]
    return certs, emails


def _activated(stack: Stack, *, with_certificates: bool = True) -> tuple[str, Credential]:
    """An enrollment of the card in R0 made directly (as the kiosk does) and activated by the
    phone: (enrollment id, the phone's derived PIV Authentication credential)."""
    body = proof_for(stack, R0)
    if with_certificates:
        certs, _ = _card_emails(stack, R0)
        body["card_certificates"] = {k: base64.b64encode(v).decode() for k, v in certs.items()}
    response = enroll_post(stack, "/enrollments", body)
    assert response.status_code == 201, response.text
    payload = parse_payload(response.json()["qr_payload"])
    derived = activate(payload, _anchor(stack), stack.tls_ca)
    register_key(derived.key)
    return payload.enrollment_id, derived


def _refused(call: Any, status: int, error: str) -> None:
    with pytest.raises(ActivationError) as caught:
        call()
    assert str(caught.value).startswith(f"{status} {error}:"), caught.value


def test_kiosk_journey_gives_a_signing_certificate_for_the_cards_email(
    stack: Stack, cards: Any, tmp_path: Path
) -> None:
    cards.insert(0, "alice")
    _, emails = _card_emails(stack, R0)
    assert emails == ["alice@hwgate.example"]
    wait_screen(stack, on("pin"))
    assert kiosk_post(stack, "/api/pin", {"pin": PIN}).json()["screen"] == "ready"
    qr = kiosk_post(stack, "/api/request").json()
    assert qr["screen"] == "qr", qr
    payload = parse_payload(str(qr["qr_payload"]))
    anchor = _anchor(stack)
    derived = activate(payload, anchor, stack.tls_ca)
    register_key(derived.key)

    smime = get_smime(payload.base_url, payload.enrollment_id, derived, anchor, stack.tls_ca)
    register_key(smime.signing_key)
    register_key(smime.km_key)
    cert = smime.certificate
    assert smime.emails == emails
    assert cert.subject == derived.certificate.subject  # the cardholder's, from the card
    assert cert.public_key() != derived.certificate.public_key()
    assert_signing_profile(cert, emails, POLICY_COMMON_POLICY)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    anchor_ski = anchor.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == anchor_ski.digest
    assert cert.not_valid_after_utc <= derived.certificate.not_valid_after_utc

    # openssl, which did not issue it, agrees it is an S/MIME signing certificate of the
    # HSM issuing CA, and a mail signed with the phone's key verifies.
    leaf, key = _save(smime, tmp_path)
    ca = stack.paths.pki_cert("issuing-ca")
    openssl_verify_smimesign(ca, leaf)
    openssl_sign_and_verify(leaf, key, ca, tmp_path)

    # The card's own Key Management key (get_smime checked it is the 9D certificate's key)
    # opens mail that openssl encrypted to the 9D certificate read from the card.
    assert_opens_mail_for_the_card(stack, "alice", smime, tmp_path)

    # Once per enrollment.
    _refused(lambda: get_smime(payload.base_url, payload.enrollment_id, derived, anchor,
                               stack.tls_ca), 409, "smime_used")  # fmt: skip


def assert_opens_mail_for_the_card(
    stack: Stack, name: str, smime: SmimeCredential, tmp: Path
) -> None:
    """openssl cms -encrypt to the 9D certificate as the card holds it (read through
    hwgated), then the phone decrypts with the key it recovered."""
    certs, _ = _card_emails(stack, R0)
    card_km = x509.load_der_x509_certificate(certs["9d"])
    assert smime.km_certificate == card_km
    card_key = CardProfile.load(stack.paths.card_dir(name)).slots[Slot.KEY_MANAGEMENT].key
    register_key(card_key)  # the escrowed key itself: never in a log
    assert _public(smime.km_key) == _public(card_key)
    recipient = tmp / "card-9d.pem"
    recipient.write_bytes(card_km.public_bytes(serialization.Encoding.PEM))
    for options in ((), ("-aes256",)):  # openssl's default cipher (3DES), and AES
        message = openssl_encrypt(recipient, MAIL, tmp, *options)
        assert decrypt(message, smime.km_key, smime.km_certificate) == MAIL


MAIL = b"Subject: for the card\r\n\r\nMail encrypted to the PIV card's 9D certificate.\r\n"


def _public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def test_rsa_card_key_is_recovered_too(stack: Stack, cards: Any, tmp_path: Path) -> None:
    """bob's card has RSA-2048 keys: key transport (ktri) instead of key agreement."""
    cards.insert(0, "bob")
    eid, derived = _activated(stack)
    smime = get_smime(stack.enrollment_url, eid, derived, _anchor(stack), stack.tls_ca)
    register_key(smime.signing_key)
    register_key(smime.km_key)
    assert isinstance(smime.km_key, rsa.RSAPrivateKey) and smime.km_key.key_size == 2048
    assert smime.emails == ["bob@hwgate.example"]
    assert_opens_mail_for_the_card(stack, "bob", smime, tmp_path)


def test_recovery_is_refused_without_an_escrow_record(
    stack: Stack, service: Any, cards: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No record for the card's 9D certificate: no key, no certificate, the request stays
    open (the S/MIME claim is released)."""
    cards.insert(0, "alice")
    eid, derived = _activated(stack)
    assert service.recovery is not None
    monkeypatch.setattr(service.recovery.escrow, "directory", tmp_path)  # an empty escrow
    _refused(lambda: get_smime(stack.enrollment_url, eid, derived, _anchor(stack), stack.tls_ca),
             409, "key_recovery_refused")  # fmt: skip
    monkeypatch.undo()
    smime = get_smime(stack.enrollment_url, eid, derived, _anchor(stack), stack.tls_ca)
    register_key(smime.km_key)
    assert smime.km_key is not None


def _save(smime: SmimeCredential, tmp: Path) -> tuple[Path, Path]:
    leaf, key = tmp / "smime.pem", tmp / "smime.key"
    leaf.write_bytes(smime.certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(smime.signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    key.chmod(0o600)
    return leaf, key


def _csr_with_san(key: Any, emails: list[str]) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "phone")]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _bad_signature(pem: str) -> str:
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


def test_refusals_leave_the_smime_request_open(stack: Stack, cards: Any) -> None:
    cards.insert(0, "alice")
    eid, derived = _activated(stack)
    base, tls = stack.enrollment_url, stack.tls_ca
    key = ec.generate_private_key(ec.SECP256R1())

    def ask(csr: str, who: Credential = derived, peer: bytes = b"") -> Any:
        return lambda: smime_request(base, eid, who, csr, peer, tls)

    # The e-mail comes from the card only: a CSR asking for another is refused.
    _refused(ask(_csr_with_san(key, ["alice@hwgate.example", "ceo@hwgate.example"])),
             400, "csr_refused")  # fmt: skip
    # Proof of possession of the signing key: the CSR's signature must verify.
    _refused(ask(_bad_signature(make_csr(key))), 400, "csr_refused")
    # The derived authentication key cannot become the signing key.
    _refused(ask(make_csr(derived.key)), 400, "csr_refused")
    # Only the phone holding this enrollment's derived key may ask.
    stranger = Credential(ec.generate_private_key(ec.SECP256R1()), derived.certificate, [])
    _refused(ask(make_csr(key), stranger), 403, "proof_refused")
    # The transport key must be EC P-256.
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    _refused(ask(make_csr(key), peer=p384), 400, "bad_peer_key")
    # A challenge is single-use.
    url = f"{base}/enrollments/{eid}/smime"
    with httpx.Client(verify=tls_context(tls), timeout=30) as http:
        got = http.post(f"{url}/challenge", json={}).json()
        body = {"challenge_id": got["challenge_id"], "csr": make_csr(key), "signature": "AA=="}
        assert http.post(url, json=body).json()["error"] == "proof_refused"
        again = http.post(url, json=body)
        assert (again.status_code, again.json()["error"]) == (403, "challenge_invalid")

    # None of that used up the enrollment's S/MIME request.
    data = smime_request(base, eid, derived, make_csr(key), b"", tls)
    issued = x509.load_pem_x509_certificate(data["certificate"].encode())
    assert issued.public_key() == key.public_key()
    san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@hwgate.example"]


def test_no_smime_without_the_cards_certificates_or_before_activation(
    stack: Stack, cards: Any
) -> None:
    cards.insert(0, "alice")
    eid, derived = _activated(stack, with_certificates=False)
    key = ec.generate_private_key(ec.SECP256R1())
    _refused(lambda: smime_request(stack.enrollment_url, eid, derived, make_csr(key), b"",
                                   stack.tls_ca), 409, "no_card_certificates")  # fmt: skip
    # An enrollment whose code was not redeemed yet has no derived credential to sign with.
    pending = enroll_post(stack, "/enrollments", proof_for(stack, R0)).json()["enrollment_id"]
    with httpx.Client(verify=tls_context(stack.tls_ca), timeout=30) as http:
        got = http.post(f"{stack.enrollment_url}/enrollments/{pending}/smime/challenge", json={})
    assert (got.status_code, got.json()["error"]) == (409, "not_issued")


def test_a_revoked_enrollment_gets_no_smime(stack: Stack, cards: Any) -> None:
    cards.insert(0, "alice")
    eid, derived = _activated(stack)
    revoked = enroll_post(stack, f"/enrollments/{eid}/revoke", {}, as_="admin")
    assert revoked.status_code == 200, revoked.text
    key = ec.generate_private_key(ec.SECP256R1())
    _refused(lambda: smime_request(stack.enrollment_url, eid, derived, make_csr(key), b"",
                                   stack.tls_ca), 409, "not_issued")  # fmt: skip


def test_revoking_the_enrollment_puts_the_signing_certificate_on_the_crl(
    stack: Stack, cards: Any
) -> None:
    """A revoked enrollment (a revoked card, an administrator) ends every derived
    certificate it gave: the S/MIME signing one is on the issuing CA's CRL beside the
    PIV Authentication one."""
    cards.insert(0, "alice")
    eid, derived = _activated(stack)
    smime = get_smime(stack.enrollment_url, eid, derived, _anchor(stack), stack.tls_ca)
    register_key(smime.signing_key)
    register_key(smime.km_key)
    revoked = enroll_post(stack, f"/enrollments/{eid}/revoke", {}, as_="admin")
    assert revoked.status_code == 200, revoked.text
    got = httpx.get(f"{stack.enrollment_url}/crl/issuing-ca.crl",
                    verify=tls_context(stack.tls_ca), timeout=30)  # fmt: skip
    assert got.status_code == 200, got.text
    crl = x509.load_der_x509_crl(got.content)
    assert crl.is_signature_valid(_anchor(stack).public_key())
    for cert in (smime.certificate, derived.certificate):
        assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def test_kiosk_cannot_forward_another_cards_certificates(stack: Stack, cards: Any) -> None:
    cards.insert(0, "alice")
    bob = CardProfile.load(ensure_card(stack.paths, "bob"))  # provisioned, not inserted
    body = proof_for(stack, R0)
    bobs_km = bob.slots[Slot.KEY_MANAGEMENT].certificate
    der = bobs_km.public_bytes(serialization.Encoding.DER)
    body["card_certificates"] = {"9d": base64.b64encode(der).decode()}
    refused = enroll_post(stack, "/enrollments", body)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "card_certificates_refused"
    assert "same card" in refused.json()["message"]
