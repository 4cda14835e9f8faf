"""mTLS options (library and CLI) and round_robin over two gateways."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from clients_support import Gateway, run_cli, start_gateway
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import hwgate
from hwgate_testbed.paths import vpcd_reader

pytestmark = pytest.mark.testbed
R0, R1 = vpcd_reader(0), vpcd_reader(1)


def test_library_mtls_role_comes_from_the_certificate(gateway: Gateway) -> None:
    with hwgate.connect(gateway.tcp, **gateway.tls_kwargs("enrollment")) as enrollment:
        assert "signer-p256" in [k.label for k in enrollment.list_keys()]
        with pytest.raises(hwgate.PolicyDenied):
            enrollment.list_readers()  # enrollment may not use CardService
    with hwgate.connect(gateway.tcp, **gateway.tls_kwargs("kiosk")) as kiosk:
        assert R0 in [r.name for r in kiosk.list_readers()]


def test_cli_mtls_options(gateway: Gateway) -> None:
    ok = run_cli(["--addr", gateway.tcp, *gateway.tls_args("admin"), "health", "--json"])
    assert ok.code == 0, ok.err
    assert ok.json()[""] == "SERVING"  # type: ignore[index]
    listed = run_cli(["--addr", gateway.tcp, *gateway.tls_args("admin"), "list"])
    assert listed.code == 0 and "hwgate.v1.HsmService" in listed.out
    no_client_cert = run_cli(
        [
            "--addr",
            gateway.tcp,
            "--cacert",
            str(gateway.pki / "ca.pem"),
            "--connect-timeout",
            "1",
            "list",
        ]
    )
    assert no_client_cert.code != 0
    plaintext = run_cli(["--addr", gateway.tcp, "--plaintext", "--connect-timeout", "1", "list"])
    assert plaintext.code == 1 and "cannot connect" in plaintext.err


def test_cli_sign_with_issuing_ca_over_mtls_as_enrollment(gateway: Gateway, tmp_path: Path) -> None:
    """The reported command: the TLS ``--key`` and the HSM key no longer collide."""
    tbs = tmp_path / "tbs.der"
    tbs.write_bytes(b"to be signed by the issuing CA")
    sig = tmp_path / "sig.der"
    conn = ["--addr", gateway.tcp, *gateway.tls_args("enrollment")]
    argv = [*conn, "sign", "issuing-ca", "--alg", "rsa-pkcs1-sha256", "--in", str(tbs)]
    result = run_cli([*argv, "--out", str(sig)])
    assert result.code == 0, result.err
    ca = x509.load_pem_x509_certificate((gateway.pki / "issuing-ca.pem").read_bytes())
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sig.read_bytes(), tbs.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    # The role still comes from enrollment.pem: a key only admin may use does not exist
    # for it (hidden keys answer like missing ones, issue #14.7).
    denied = run_cli([*conn, "sign", "cli-test-none", "--alg", "ecdsa-sha256", "--in", str(tbs)])
    assert denied.code == 64 + 5, denied.err  # NOT_FOUND
    assert "KEY_NOT_FOUND" in denied.err


def test_round_robin_spreads_calls_and_skips_a_stopped_gateway(
    testbed: object, tmp_path: Path
) -> None:
    a = start_gateway(tmp_path / "a", testbed, readers=[R0], hsm=False)
    b = start_gateway(tmp_path / "b", testbed, readers=[R1], hsm=False)
    target = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
    client = hwgate.connect(target, **a.tls_kwargs("admin"))
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while seen != {R0, R1} and time.monotonic() < deadline:
            seen |= {r.name for r in client.list_readers()}  # one gateway answers each call
        assert seen == {R0, R1}, "round_robin never reached both gateways"
        assert a.proc.stop() == 0
        answers = [tuple(r.name for r in client.list_readers()) for _ in range(10)]
        assert set(answers) == {(R1,)}, "a call went to the stopped gateway"
    finally:
        client.close()
        a.proc.stop(signal.SIGKILL)
        b.proc.stop(signal.SIGKILL)
