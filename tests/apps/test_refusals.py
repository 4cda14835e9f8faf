"""What the enrollment server and hwgate must refuse: codes, proofs, CSRs, roles, caps."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import grpc
import pytest
from apps_support import PIN, enroll, enroll_post, kiosk_client, proof_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import hwgate
from hwgate_apps.enrollment.service import EnrollmentService
from hwgate_apps.phone.wallet import make_csr
from hwgate_apps.stack import Stack
from hwgate_testbed.paths import TCP_LISTEN, vpcd_reader

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)


def _redeem(stack: Stack, eid: str, code: str, csr: str | None = None) -> tuple[int, str]:
    csr = csr or make_csr(ec.generate_private_key(ec.SECP256R1()))
    response = enroll_post(stack, f"/enrollments/{eid}/certificate", {"csr": csr, "code": code})
    return response.status_code, response.json().get("error", "")


def test_activation_code_is_single_use(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    e = enroll(stack, R0)
    assert _redeem(stack, e["enrollment_id"], e["code"])[0] == 201
    assert _redeem(stack, e["enrollment_id"], e["code"]) == (409, "code_used")


def test_wrong_code_is_refused_and_attempts_run_out(
    stack: Stack, cards: object, service: EnrollmentService
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    e = enroll(stack, R0)
    wrong = "A" * 8 if e["code"] != "A" * 8 else "B" * 8
    for _ in range(service.config.code_attempts):
        assert _redeem(stack, e["enrollment_id"], wrong) == (403, "code_wrong")
    # Out of attempts: even the right code no longer works.
    assert _redeem(stack, e["enrollment_id"], e["code"]) == (429, "code_locked")


def test_expired_code_is_refused(stack: Stack, cards: object, service: EnrollmentService) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    e = enroll(stack, R0)
    service.store._run(  # age the code instead of waiting 10 minutes
        "UPDATE enrollments SET code_expires_at = 0 WHERE id = ?", (e["enrollment_id"],)
    )
    assert _redeem(stack, e["enrollment_id"], e["code"]) == (410, "code_expired")


def test_revoked_enrollment_cannot_be_redeemed(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    e = enroll(stack, R0)
    revoked = enroll_post(stack, f"/enrollments/{e['enrollment_id']}/revoke", {}, as_="admin")
    assert revoked.json()["status"] == "revoked"
    assert _redeem(stack, e["enrollment_id"], e["code"]) == (409, "code_used")


def test_csr_with_a_p384_key_or_a_bad_signature_is_refused(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    e = enroll(stack, R0)
    p384 = make_csr(ec.generate_private_key(ec.SECP384R1()))
    assert _redeem(stack, e["enrollment_id"], e["code"], p384) == (400, "csr_refused")
    good = make_csr(ec.generate_private_key(ec.SECP256R1()))
    der = bytearray(x509.load_pem_x509_csr(good.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    assert _redeem(stack, e["enrollment_id"], e["code"], forged) == (400, "csr_refused")
    # A refused CSR spends no attempt and leaves the code usable.
    assert _redeem(stack, e["enrollment_id"], e["code"])[0] == 201


def test_proof_for_another_origin_is_refused(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    body = proof_for(stack, R0, origin="https://evil.example")
    response = enroll_post(stack, "/enrollments", body)
    assert (response.status_code, response.json()["error"]) == (403, "proof_refused")
    # The kiosk claiming our origin does not help: the signature is over evil's digest.
    body["origin"] = stack.enrollment_url
    body["challenge_id"] = proof_for(stack, R0)["challenge_id"]
    response = enroll_post(stack, "/enrollments", body)
    assert response.json()["error"] == "proof_refused"


def test_challenge_is_single_use_and_bound_to_the_kiosk_session(
    stack: Stack, cards: object
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    body = proof_for(stack, R0, kiosk_session="kiosk-a")
    other = enroll_post(stack, "/enrollments", {**body, "kiosk_session": "kiosk-b"})
    assert other.json()["error"] == "challenge_invalid"
    assert enroll_post(stack, "/enrollments", body).status_code == 201
    again = enroll_post(stack, "/enrollments", body)
    assert (again.status_code, again.json()["error"]) == (403, "challenge_invalid")


def _rogue_certificate(real_der: bytes) -> bytes:
    """The card's own key and names, but issued by a CA the server does not trust."""
    real = x509.load_der_x509_certificate(real_der)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue PIV CA")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(real.subject)
        .issuer_name(name)
        .public_key(real.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    for ext in real.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(rogue_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_card_certificate_that_does_not_chain_is_refused(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    body = proof_for(stack, R0)
    rogue = _rogue_certificate(base64.b64decode(body["certificate"]))
    body["certificate"] = base64.b64encode(rogue).decode()
    response = enroll_post(stack, "/enrollments", body)
    # Checked before the proof itself (issue #23): the precise reason, not proof_refused.
    assert (response.status_code, response.json()["error"]) == (403, "piv_issuer_unknown")
    assert "not a trusted PIV issuer" in response.json()["message"]


def test_rsa_card_enrolls(stack: Stack, cards: object) -> None:
    cards.insert(0, "bob")  # type: ignore[attr-defined]
    e = enroll(stack, R0)
    assert e["subject"].startswith("CN=bob") and len(e["fasc_n"]) == 32
    with kiosk_client(stack) as client:
        assert client.get_card_info(R0).chuid.guid == e["card_uuid"]


def test_credentials_per_cardholder_are_capped(
    stack: Stack, cards: object, service: EnrollmentService
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    e = enroll(stack, R0)
    assert _redeem(stack, e["enrollment_id"], e["code"])[0] == 201
    issued = service.store.active_credentials(e["fasc_n"])
    original = service.config
    service.config = dataclasses.replace(original, max_credentials_per_cardholder=issued)
    try:
        response = enroll_post(stack, "/enrollments", proof_for(stack, R0))
        assert (response.status_code, response.json()["error"]) == (409, "too_many_credentials")
    finally:
        service.config = original


def test_kiosk_identity_cannot_use_the_issuing_ca(stack: Stack) -> None:
    digest = bytes(32)
    pki = stack.paths
    over_tls = hwgate.connect(
        TCP_LISTEN, cacert=pki.pki_cert("ca"), cert=pki.pki_cert("kiosk"), key=pki.pki_key("kiosk")
    )
    with kiosk_client(stack) as local, over_tls:
        for client in (local, over_tls):
            with pytest.raises(hwgate.HwgateError) as err:
                client.sign("issuing-ca", "rsa-pkcs1-sha256", digest=digest)
            assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    # The enrollment identity may (that is how certificates get issued).
    enrollment = stack.extra["enrollment_app"].state.service.hsm
    assert len(enrollment.sign("issuing-ca", "rsa-pkcs1-sha256", digest=digest)) == 384


def test_pin_never_reaches_the_logs(stack: Stack) -> None:
    log = (stack.workdir / "hwgated.log").read_text()
    assert PIN not in log
