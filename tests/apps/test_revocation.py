"""Revocation at issuance: revoked, expired, unknown-issuer and unverifiable cards refused.

Real stack (hwgated, enrollment server, kiosk) on the bed; the bed's PIV CA
publishes its CRL in DIR/pki/piv-ca.crl and `hwgate-testbed revoke` puts a
card on it. Each test that revokes uses a card made for it (undone after).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apps_support import PIN, enroll, enroll_post, kiosk_post, on, proof_for, wait_screen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from life_support import life_stack, made_card, service_of

from hwgate_apps.enrollment.revocation import CardRefused, PivValidator
from hwgate_apps.phone.wallet import make_csr
from hwgate_apps.stack import Stack
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard import piv_crl
from hwgate_testbed.vcard.piv_ca import PivCa, ensure_piv_ca
from hwgate_testbed.vcard.piv_ocsp import OcspServer

pytestmark = pytest.mark.testbed
R0 = vpcd_reader(0)


@pytest.fixture(scope="module")
def stack(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with life_stack(testbed, tmp_path_factory.mktemp("revocation")) as running:
        yield running


def _revoke_cli(stack: Stack, name: str, *more: str) -> None:
    """`hwgate-testbed revoke --card NAME` as an operator runs it."""
    argv = [sys.executable, "-m", "hwgate_testbed.cli", "revoke", "--dir",
            str(stack.paths.root), "--card", name, *more]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "piv-ca.crl" in done.stdout


def _refusal(stack: Stack) -> tuple[int, str, str]:
    response = enroll_post(stack, "/enrollments", proof_for(stack, R0))
    body = response.json()
    return response.status_code, body.get("error", ""), body.get("message", "")


def test_revoked_card_is_refused_with_the_reason_on_the_kiosk(
    stack: Stack, cards: object, testbed: object
) -> None:
    with made_card(stack.paths, cards, "lc-revoked") as card:
        _revoke_cli(stack, card.name, "--reason", "key_compromise")
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        status, error, message = _refusal(stack)
        assert (status, error) == (403, "piv_cert_revoked")
        assert "revoked" in message and "key compromise" in message
        # Through the kiosk: the same reason, in words, on the page.
        wait_screen(stack, on("pin"))
        assert kiosk_post(stack, "/api/pin", {"pin": PIN}).json()["screen"] == "ready"
        screen = kiosk_post(stack, "/api/request").json()
        assert screen["screen"] == "error", screen
        assert "revoked" in screen["message"] and "key compromise" in screen["message"]


def test_card_revoked_between_enrollment_and_redemption_gets_nothing(
    stack: Stack, cards: object
) -> None:
    with made_card(stack.paths, cards, "lc-late") as card:
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        e = enroll(stack, R0)  # the card is good now: a code is shown
        _revoke_cli(stack, card.name)
        csr = make_csr(ec.generate_private_key(ec.SECP256R1()))
        body = {"csr": csr, "code": e["code"]}
        response = enroll_post(stack, f"/enrollments/{e['enrollment_id']}/certificate", body)
        assert (response.status_code, response.json()["error"]) == (403, "piv_cert_revoked")
        row = service_of(stack).store.get(e["enrollment_id"])
        assert row is not None and row.derived_cert is None and row.status == "pending"


def test_expired_card_is_refused(stack: Stack, cards: object) -> None:
    cards.insert(0, "alice", profile="expired-9a")  # type: ignore[attr-defined]
    status, error, message = _refusal(stack)
    assert (status, error) == (403, "piv_cert_expired")
    assert "expired on" in message


def test_card_from_an_unknown_issuer_is_refused(
    stack: Stack, cards: object, tmp_path: object
) -> None:
    stranger_ca = ensure_piv_ca(tmp_path / "other-pki")  # type: ignore[operator]
    with made_card(stack.paths, cards, "lc-stranger", ca=stranger_ca) as card:
        cards.insert(0, card.name)  # type: ignore[attr-defined]
        status, error, message = _refusal(stack)
    assert (status, error) == (403, "piv_issuer_unknown")
    assert "not a trusted PIV issuer" in message


def test_unreachable_crl_refuses_and_the_crl_over_http_is_read(stack: Stack, cards: object) -> None:
    service = service_of(stack)
    before = service.config
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(stack.paths.pki)
    )
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            service.config = dataclasses.replace(before, piv_crl_url=f"{url}/no-such.crl")
            status, error, message = _refusal(stack)
            assert (status, error) == (403, "piv_revocation_unknown")
            assert "HTTP 404" in message
            service.config = dataclasses.replace(before, piv_crl_url=f"{url}/piv-ca.crl")
            response = enroll_post(stack, "/enrollments", proof_for(stack, R0))
            assert response.status_code == 201, response.text
        finally:
            service.config = before
            httpd.shutdown()
            thread.join(timeout=10)


# --- the validator alone (no bed): CRL sources and what makes a CRL unusable ---


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def _leaf(
    ca: x509.Certificate, key: ec.EllipticCurvePrivateKey, cdp: str, ocsp_url: str = ""
) -> x509.Certificate:
    own = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "holder")]))
        .issuer_name(ca.subject).public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
            "urn:uuid:00000000-0000-4000-8000-000000000000")]), False)
    )  # fmt: skip
    if cdp:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(cdp)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), False)
    if ocsp_url:
        where = x509.UniformResourceIdentifier(ocsp_url)
        aia = x509.AuthorityInformationAccess(
            [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, where)]
        )
        builder = builder.add_extension(aia, False)
    return builder.sign(key, hashes.SHA256())


def _crl(ca: x509.Certificate, key: Any, revoked: list[int], *, age: int = 0) -> bytes:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=age)
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
        .last_update(now - dt.timedelta(hours=1)).next_update(now + dt.timedelta(days=1))
    )  # fmt: skip
    for serial in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_validator_reads_the_certificates_crl_distribution_point(tmp_path: Path) -> None:
    ca, key = _ca("unit PIV CA")
    crl_file = tmp_path / "ca.crl"
    leaf = _leaf(ca, key, crl_file.as_uri())
    crl_file.write_bytes(_crl(ca, key, []))
    validator = PivValidator([ca], cache_seconds=0)
    assert validator.check(leaf).revocation == "good"
    crl_file.write_bytes(_crl(ca, key, [leaf.serial_number]))
    with pytest.raises(CardRefused) as refused:
        validator.check(leaf)
    assert refused.value.error == "piv_cert_revoked"


def test_validator_fails_closed_on_a_stale_forged_or_missing_crl(tmp_path: Path) -> None:
    ca, key = _ca("unit PIV CA")
    crl_file = tmp_path / "ca.crl"
    leaf = _leaf(ca, key, "")
    validator = PivValidator([ca], crl_url=str(crl_file), cache_seconds=0)
    _, other_key = _ca("unit PIV CA")  # same name, another key
    for content, why in ((None, "No such file"), (_crl(ca, key, [], age=3), "window"),
                         (_crl(ca, other_key, []), "signature")):  # fmt: skip
        if content is not None:
            crl_file.write_bytes(content)
        with pytest.raises(CardRefused) as refused:
            validator.check(leaf)
        assert refused.value.error == "piv_revocation_unknown" and not refused.value.definite
        assert why in refused.value.message
    relaxed = PivValidator([ca], crl_url=str(crl_file), require_status=False, cache_seconds=0)
    assert relaxed.check(leaf).revocation == "unchecked"


def test_validator_asks_the_aia_ocsp_responder_first(tmp_path: Path) -> None:
    ca, key = _ca("unit PIV CA")
    with OcspServer(tmp_path, PivCa(ca, key)) as responder:
        leaf = _leaf(ca, key, "", responder.url)  # no CRL at all: OCSP alone decides
        validator = PivValidator([ca], cache_seconds=0)
        status = validator.check(leaf)
        assert (status.revocation, status.source) == ("good", responder.url)
        piv_crl.revoke(tmp_path, PivCa(ca, key), [leaf.serial_number], "affiliation_changed")
        with pytest.raises(CardRefused) as refused:
            validator.check(leaf)
        assert refused.value.error == "piv_cert_revoked"
        assert "affiliation changed" in refused.value.message
        assert responder.requests == 2
    # A delegated responder (issued by the CA for OCSP signing) is believed ...
    delegate = _responder(ca, key, "unit OCSP responder", ca_key_signs=True)
    with OcspServer(tmp_path, PivCa(ca, key), signer=delegate) as responder:
        leaf = _leaf(ca, key, "", responder.url)
        assert PivValidator([ca], cache_seconds=0).check(leaf).revocation == "good"
    # ... one with the CA's very name but its own key is not.
    forger = _responder(ca, key, "unit PIV CA", ca_key_signs=False)
    with OcspServer(tmp_path, PivCa(ca, key), signer=forger) as responder:
        leaf = _leaf(ca, key, "", responder.url)
        with pytest.raises(CardRefused) as refused:
            PivValidator([ca], cache_seconds=0).check(leaf)
        assert refused.value.error == "piv_revocation_unknown"
        assert "signature does not verify" in refused.value.message


def _responder(ca: x509.Certificate, key: Any, name: str, *, ca_key_signs: bool) -> PivCa:
    """An OCSP-signing certificate: issued by the CA, or self-made under the CA's name."""
    own = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject).public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
        .sign(key if ca_key_signs else own, hashes.SHA256())
    )  # fmt: skip
    return PivCa(cert, own)


def test_bed_ocsp_responder_answers_for_a_revoked_card(stack: Stack, cards: object) -> None:
    service = service_of(stack)
    before = service.config
    ca = ensure_piv_ca(stack.paths.pki)
    with made_card(stack.paths, cards, "lc-ocsp") as card, OcspServer(stack.paths.pki, ca) as r:
        _revoke_cli(stack, card.name, "--reason", "superseded")
        # No CRL to be had: only the responder can tell good from revoked.
        missing = str(stack.paths.pki / "no-such.crl")
        service.config = dataclasses.replace(before, piv_ocsp_url=r.url, piv_crl_url=missing)
        try:
            cards.insert(0, card.name)  # type: ignore[attr-defined]
            status, error, message = _refusal(stack)
            assert (status, error) == (403, "piv_cert_revoked") and "superseded" in message
            cards.remove(0)  # type: ignore[attr-defined]
            cards.insert(0, "alice")  # type: ignore[attr-defined]
            response = enroll_post(stack, "/enrollments", proof_for(stack, R0))
            assert response.status_code == 201, response.text
            assert r.requests == 2
        finally:
            service.config = before
