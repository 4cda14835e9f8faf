"""Who may call the enrollment server: kiosks and administrators by TLS client
certificate, refusals audited with the peer's identity (and nothing secret).

The checks come before any hwgated call, so this module serves the enrollment
server alone (no hwgated, no kiosk): no daemon start-up to pay for.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apps_support import client_tls, enroll_post, enrollments_of
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hwgate_apps import web
from hwgate_apps.devpki import kiosk_certificate, web_certificate
from hwgate_apps.enrollment.peers import matches
from hwgate_apps.enrollment.server import make_app
from hwgate_apps.enrollment.transport import server_tls
from hwgate_apps.stack import KIOSK_NAME, Stack, enrollment_config
from hwgate_apps.web import tls_context

pytestmark = pytest.mark.testbed
AUDIT = "hwgate_apps.enrollment.audit"
FASC_N = "9" * 32


@pytest.fixture(scope="module")
def stack(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The enrollment server as the stack configures it, without hwgated or a kiosk."""
    paths = testbed.paths  # type: ignore[attr-defined]
    workdir = tmp_path_factory.mktemp("auth")
    sock = web.bind("127.0.0.1", 0)
    config = enrollment_config(paths, workdir, sock.getsockname()[1])
    cert, key = web_certificate(paths.pki, workdir / "tls")
    served = web.serve_in_thread(make_app(config), sock, **server_tls(config, str(cert), str(key)))
    kiosk = kiosk_certificate(paths.pki, workdir / "tls", KIOSK_NAME)
    running = Stack(paths, workdir, enrollment=served, enrollment_url=config.origin,
                    extra={"kiosk_cert": tuple(map(str, kiosk))})  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == AUDIT]


def test_a_kiosk_without_a_client_certificate_is_refused_and_audited(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    body = {"kiosk_session": "k-nocert"}
    response = enroll_post(stack, "/enrollments/challenge", body, as_=None)
    assert (response.status_code, response.json()["error"]) == (401, "client_certificate_required")
    response = enroll_post(stack, "/enrollments", {"challenge_id": "x"}, as_=None)
    assert response.status_code == 401
    [first, second] = audit_records(caplog)
    assert first["path"] == "/enrollments/challenge" and first["peer"] is None
    assert first["role_needed"] == "kiosk" and str(first["outcome"]).startswith("refused")
    assert second["path"] == "/enrollments"


def test_an_unknown_client_certificate_is_refused_and_audited_with_its_identity(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # The bed's enrollment certificate: from the trusted CA, but not a kiosk.
    caplog.set_level(logging.INFO, logger=AUDIT)
    body = {"kiosk_session": "k-unknown", "secret_marker": "s3cr3t-123456"}
    response = enroll_post(stack, "/enrollments/challenge", body, as_="enrollment")
    assert (response.status_code, response.json()["error"]) == (403, "not_authorized")
    [record] = audit_records(caplog)
    peer = record["peer"]
    assert isinstance(peer, dict)
    assert peer["uris"] == ["spiffe://hwgate.test/enrollment"]
    assert "CN=enrollment" in peer["subject"] and peer["serial"]
    assert str(record["address"]).startswith("127.0.0.1:")
    assert "s3cr3t" not in caplog.text and "k-unknown" not in caplog.text


def test_a_known_kiosk_gets_a_challenge(stack: Stack) -> None:
    response = enroll_post(stack, "/enrollments/challenge", {"kiosk_session": "k-ok"})
    assert response.status_code == 201, response.text


def test_a_certificate_from_another_ca_fails_the_handshake(stack: Stack, tmp_path: Path) -> None:
    cert, key = _self_signed_client(tmp_path, "spiffe://hwgate.test/kiosk/rogue")
    context = tls_context(stack.tls_ca, str(cert), str(key))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(f"{stack.enrollment_url}/enrollments/challenge",
                   json={"kiosk_session": "k"}, verify=context, timeout=30)  # fmt: skip


def test_list_and_revoke_need_an_admin_certificate(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT)
    for who, status in ((None, 401), ("kiosk", 403), ("enrollment", 403)):
        assert enrollments_of(stack, FASC_N, as_=who).status_code == status, who
        revoke = enroll_post(stack, "/enrollments/nope/revoke", {}, as_=who)
        assert revoke.status_code == status, who
    assert enrollments_of(stack, FASC_N, as_="admin").json() == {"enrollments": []}
    assert enroll_post(stack, "/enrollments/nope/revoke", {}, as_="admin").status_code == 404
    allowed = [r for r in audit_records(caplog) if r["outcome"] == "allowed"]
    assert {r["method"] for r in allowed} == {"GET", "POST"}
    assert all(r["peer"]["uris"] == ["spiffe://hwgate.test/admin"] for r in allowed)  # type: ignore[index]
    assert FASC_N not in caplog.text  # the query string is not logged


def test_the_phone_redeems_without_a_client_certificate(stack: Stack) -> None:
    # Reaches the enrollment lookup (404), not the certificate check: the route is public.
    response = httpx.post(f"{stack.enrollment_url}/enrollments/nope/certificate",
                          json={"csr": "", "code": ""}, verify=client_tls(stack, None),
                          timeout=30)  # fmt: skip
    assert response.status_code == 404


def test_identity_rules_match_exactly_or_by_a_trailing_star() -> None:
    kiosk = ("spiffe://hwgate.test/kiosk/k1", "CN=kiosk k1")
    assert matches(kiosk, ["spiffe://hwgate.test/kiosk/*"])
    assert matches(kiosk, ["CN=kiosk k1"])
    assert not matches(kiosk, ["spiffe://hwgate.test/kiosk"])
    assert not matches(("spiffe://hwgate.test/kiosk",), ["spiffe://hwgate.test/kiosk/*"])
    assert not matches(kiosk, [])


def _self_signed_client(tmp_path: Path, uri: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue kiosk")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "rogue.pem", tmp_path / "rogue.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path
