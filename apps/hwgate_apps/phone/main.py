"""``hwgate-phone [--server URL] [--payload URL | --qr-png FILE] --anchor issuing-ca.pem``.

With ``--server``, the phone first signs in (RFC 8628): it prints a code to type
at a smart-card kiosk ("I have a code") and polls until the cardholder approves
there; then it redeems the kiosk's QR code with that sign-in (the QR text from
``--payload``/``--qr-png``, or one line read from standard input once signed in).
Without it, it redeems a QR code alone, as before. It prints the derived
certificate's subject, serial and policy OID. ``--out DIR`` keeps the key
(PKCS#8, 0600) and the chain.

``hwgate-phone status --cert DIR/derived-chain.pem --anchor issuing-ca.pem``
checks the saved credential against the issuing CA's CRL: exit 0 good,
3 revoked, 1 when it cannot tell.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hwgate.certfmt import serial_hex
from hwgate_apps.phone.device_flow import DeviceFlowError, poll, same_origin, start
from hwgate_apps.phone.qr import QrError, decode_png
from hwgate_apps.phone.status import check_status
from hwgate_apps.phone.wallet import ActivationError, Credential, activate, parse_payload


def _save(cred: Credential, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    key = cred.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())  # fmt: skip
    fd = os.open(out / "derived.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cred.chain)
    (out / "derived-chain.pem").write_bytes(pem)


def _sign_in(server: str, tls_ca: str | None, device_name: str) -> str:
    """RFC 8628: show the code, poll until a kiosk approves; the access token."""
    code = start(server, tls_ca, device_name=device_name)
    print(f"To sign in, choose 'I have a code' at a smart-card kiosk ({code.verification_uri})",
          flush=True)  # fmt: skip
    print(f"user code: {code.user_code}", flush=True)
    print(f"  (link: {code.verification_uri_complete}; valid {code.expires_in} s)", flush=True)

    def waiting(error: str, interval: int) -> None:
        if error == "slow_down":
            print(f"server asked to slow down: polling every {interval} s", flush=True)

    token = poll(server, code, tls_ca, on_answer=waiting)
    print("signed in: the cardholder approved this device at the kiosk", flush=True)
    return token


def _qr_text(args: argparse.Namespace) -> str:
    if args.payload:
        return str(args.payload)
    if args.qr_png:
        return decode_png(args.qr_png)
    print("scan the kiosk's QR code (its text, one line):", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        raise ActivationError("no QR code text on standard input")
    return line.strip()


def status_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hwgate-phone status")
    parser.add_argument("--cert", type=Path, required=True, help="the derived certificate (PEM)")
    parser.add_argument("--anchor", type=Path, required=True, help="issuing CA certificate")
    parser.add_argument("--tls-ca", default=None, help="CA file for the server's TLS")
    parser.add_argument("--crl-url", default="", help="instead of the certificate's CRL DP")
    args = parser.parse_args(argv)
    try:
        cert = x509.load_pem_x509_certificate(args.cert.read_bytes())
        anchor = x509.load_pem_x509_certificate(args.anchor.read_bytes())
        st = check_status(cert, anchor, args.tls_ca, args.crl_url)
    except (ActivationError, OSError, ValueError) as err:
        print(f"hwgate-phone status: {err}", file=sys.stderr)
        return 1
    serial = serial_hex(cert.serial_number)
    if st.status == "revoked":
        assert st.revoked_at is not None
        print(f"serial {serial}: revoked on {st.revoked_at:%Y-%m-%d %H:%M:%S} UTC "
              f"({st.reason}), CRL number {st.crl_number}")  # fmt: skip
        return 3
    print(f"serial {serial}: good (CRL number {st.crl_number})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["status"]:
        return status_main(argv[1:])
    parser = argparse.ArgumentParser(prog="hwgate-phone", description=__doc__)
    parser.add_argument("--server", help="sign in at this enrollment server first (RFC 8628)")
    parser.add_argument("--device-name", default="hwgate phone simulator",
                        help="what the kiosk shows as this device")  # fmt: skip
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--payload", help="the QR code's text")
    source.add_argument("--qr-png", type=Path, help="an image of the QR code (zbarimg)")
    parser.add_argument("--anchor", type=Path, required=True, help="issuing CA certificate")
    parser.add_argument("--tls-ca", default=None, help="CA file for the server's TLS")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.server or args.payload or args.qr_png):
        parser.error("give --server, --payload or --qr-png")
    try:
        anchor = x509.load_pem_x509_certificate(args.anchor.read_bytes())
        token = _sign_in(args.server, args.tls_ca, args.device_name) if args.server else ""
        text = _qr_text(args)
        payload = parse_payload(text)
        if args.server and not same_origin(payload.base_url, args.server):
            raise ActivationError(f"the QR code is for {payload.base_url}, not {args.server}")
        cred = activate(payload, anchor, args.tls_ca, token)
    except (QrError, ActivationError, DeviceFlowError, OSError, ValueError) as err:
        print(f"hwgate-phone: {err}", file=sys.stderr)
        return 1
    print("chain verified up to", anchor.subject.rfc4514_string())
    print("subject:", cred.certificate.subject.rfc4514_string())
    print("serial: ", serial_hex(cred.certificate.serial_number))
    print("policy: ", ", ".join(cred.policy_oids))
    print("SAN:    ", cred.uuid_uri)
    if args.out:
        _save(cred, args.out)
        print("saved key and chain in", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
