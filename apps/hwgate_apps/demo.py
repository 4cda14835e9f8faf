"""``make demo`` and ``make kiosk``: the derived-credential flow on the test bed.

demo: test bed + hwgated + enrollment server + kiosk. The phone simulator asks
the enrollment server to sign in (RFC 8628) and shows a code; headless Chromium
chooses "I have a code" at the kiosk, types it, inserts the virtual card, enters
the PIN, approves the sign-in, screenshots each of those screens and the QR
screen; zbarimg decodes the QR code and the signed-in phone redeems it with its
token. Then the phone asks for S/MIME: a signing certificate for a key it makes,
and the card's Key Management key, recovered from escrow and re-wrapped inside
the HSM for the phone; it opens a mail ``openssl cms -encrypt`` sent to the
card's 9D certificate. kiosk (``--interactive``): the same services, left running for a person
with a browser.

Every run starts from a fresh enrollment database: the enrollments of earlier
runs would count against the server's per-cardholder cap
(``max_credentials_per_cardholder = 3``), and the fourth run would be refused.
When the page does not reach the screen the driver waits for, it prints what
the page shows (screen and message) in one line and exits 1, no stack trace.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hwgate.certfmt import serial_hex
from hwgate_apps import browser
from hwgate_apps.phone import device_flow
from hwgate_apps.phone.cms import CmsError, decrypt
from hwgate_apps.phone.device_flow import DeviceFlowError
from hwgate_apps.phone.qr import QrError, decode_png
from hwgate_apps.phone.smime import get_smime
from hwgate_apps.phone.wallet import ActivationError, activate, parse_payload
from hwgate_apps.stack import Stack, start_stack
from hwgate_testbed import orchestrate
from hwgate_testbed.orchestrate import TestbedError
from hwgate_testbed.paths import PIV_PIN, TestbedPaths


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


DATABASE = "enrollment.sqlite3"
# What one run leaves in its work directory that the next run must not inherit.
RUN_STATE = (DATABASE, f"{DATABASE}-journal", f"{DATABASE}-wal", f"{DATABASE}-shm")


def fresh_state(workdir: Path) -> list[Path]:
    """Remove the enrollment database earlier runs left in *workdir*; the removed files."""
    removed = [workdir / name for name in RUN_STATE if (workdir / name).exists()]
    for path in removed:
        path.unlink()
    return removed


SIGN_IN_TIMEOUT = 60.0  # seconds for the phone's token once the kiosk approved


class PhoneSignIn:
    """The phone's RFC 8628 sign-in: its code, and its polling in a thread (as a phone
    polls in the background while its owner walks to the kiosk)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.code = device_flow.start(stack.enrollment_url, stack.tls_ca, device_name="demo phone")
        self.token = ""
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._poll, name="phone-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        try:
            self.token = device_flow.poll(self.stack.enrollment_url, self.code, self.stack.tls_ca)
        except (DeviceFlowError, httpx.HTTPError) as exc:
            self.error = exc

    def wait(self) -> str:
        """The access token; ActivationError when the sign-in ended without one."""
        self._thread.join(SIGN_IN_TIMEOUT)
        if self.error is not None or not self.token:
            raise ActivationError(f"the phone's sign-in failed: {self.error or 'no token'}")
        return self.token


def shot(page: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    step(f"screenshot saved: {path}")


def run_demo(stack: Stack, screenshot: Path) -> None:
    """The flow, start to end; raises browser.PageError when the page goes elsewhere.

    Screenshots: *screenshot* is the QR screen; the code entry, the device shown and
    the approval go beside it as kiosk-code.png, kiosk-device.png, kiosk-approve.png.
    """
    paths = stack.paths
    with browser.kiosk_page(stack.kiosk_url) as page:
        browser.wait_screen(page, "insert")
        step(f"kiosk page open at {stack.kiosk_url}: 'Insert your card'")
        phone = PhoneSignIn(stack)
        step(f"phone: asked {stack.enrollment_url} to sign in; it shows the code "
             f"{phone.code.user_code} and polls every {phone.code.interval} s")  # fmt: skip
        page.click("#have-code")
        browser.wait_screen(page, "code")
        page.fill("#user-code", phone.code.user_code)
        shot(page, screenshot.with_name("kiosk-code.png"))
        page.click("#code-ok")
        browser.wait_screen(page, "device_insert")
        shot(page, screenshot.with_name("kiosk-device.png"))
        step("kiosk: 'I have a code', code typed; it shows which device asks")
        orchestrate.insert(paths, 0, "alice", None)
        try:
            _with_card(stack, page, screenshot, phone)
        finally:
            orchestrate.remove(paths, 0)  # also when it failed: the next run starts clean
        browser.wait_screen(page, "insert")
        step("card removed: the kiosk is back at 'Insert your card'")


def _with_card(stack: Stack, page: Any, screenshot: Path, phone: PhoneSignIn) -> None:
    """With the card in: PIN, approve, QR screen, screenshots, decode, the phone redeems."""
    paths = stack.paths
    browser.wait_screen(page, "pin")
    step(f"card detected: {page.text_content('#s-pin .name')}; entering the PIN on the pad")
    browser.enter_pin(page, PIV_PIN)
    browser.wait_screen(page, "approve")
    shot(page, screenshot.with_name("kiosk-approve.png"))
    step("PIN accepted; the kiosk asks to approve the phone's sign-in: pressing 'Approve'")
    page.click("#approve")
    browser.wait_screen(page, "qr")
    code = page.text_content("#code")
    step(f"the card signed the approval; QR screen shown, activation code {code}")
    shot(page, screenshot)
    token = phone.wait()
    step("phone: signed in (its poll got the token)")
    payload = decode_png(screenshot)
    step(f"zbarimg decoded the QR code: {payload.split('code=')[0]}code=…")
    anchor = x509.load_pem_x509_certificate(paths.pki_cert("issuing-ca").read_bytes())
    cred = activate(parse_payload(payload), anchor, stack.tls_ca, token)
    step("phone: P-256 key made on the phone, CSR sent with its sign-in token, "
         "chain verified up to the HSM CA")  # fmt: skip
    print(f"    subject: {cred.certificate.subject.rfc4514_string()}")
    print(f"    serial:  {serial_hex(cred.certificate.serial_number)}")
    print(f"    policy:  {', '.join(cred.policy_oids)}")
    print(f"    SAN:     {cred.uuid_uri}")
    _smime(stack, parse_payload(payload).enrollment_id, cred, anchor)


TEST_MAIL = (
    b"Subject: for your card\r\n\r\nEncrypted to the PIV card's Key Management certificate.\r\n"
)


def _smime(stack: Stack, eid: str, cred: Any, anchor: x509.Certificate) -> None:
    """S/MIME on the phone: a signing certificate for a key made there, and the card's
    Key Management key recovered (re-wrapped inside the HSM for the phone's ephemeral
    key); then mail that openssl encrypted to the card's 9D certificate is opened."""
    smime = get_smime(stack.enrollment_url, eid, cred, anchor, stack.tls_ca)
    serial = serial_hex(smime.certificate.serial_number)
    step(f"phone: S/MIME signing certificate for {', '.join(smime.emails)} "
         f"(serial {serial}), key made on the phone")  # fmt: skip
    if smime.km_key is None or smime.km_certificate is None:
        raise ActivationError("the server recovered no Key Management key")
    step("phone: the card's Key Management key recovered (re-wrapped in the HSM for the "
         "phone's ephemeral key); it matches the card's 9D certificate")  # fmt: skip
    recipient = stack.paths.root / "apps" / "card-9d.pem"
    recipient.write_bytes(smime.km_certificate.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-recip", str(recipient)],
                          input=TEST_MAIL, capture_output=True, timeout=60)  # fmt: skip
    if done.returncode != 0:
        raise ActivationError(f"openssl cms -encrypt failed: {done.stderr.decode().strip()}")
    opened = decrypt(done.stdout, smime.km_key, smime.km_certificate)
    subject = opened.split(b"\r\n", 1)[0].decode()
    step(f"openssl cms -encrypt sent a mail to the card's 9D certificate; "
         f"the phone decrypted it: {subject!r}")  # fmt: skip


def drive(stack: Stack, screenshot: Path) -> int:
    """run_demo with its expected failures as one line on stderr; the exit code."""
    try:
        run_demo(stack, screenshot)
    except (browser.PageError, ActivationError, QrError, TestbedError, DeviceFlowError,
            CmsError) as exc:  # fmt: skip
        print(f"hwgate-demo: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def nsenter_prefix() -> str:
    """``nsenter ... `` for commands a person runs from another terminal while this
    process serves in a private mount + network namespace (make kiosk as root): the
    test bed's pcscd and vpcd ports are only reachable in there."""
    bindir = Path(sys.executable).parent
    return f"nsenter --target {os.getpid()} --mount --net {bindir}/"


def default_screenshot(paths: TestbedPaths) -> Path:
    """The QR screenshot goes beside the test bed's files (ignored by git): a demo run
    must not rewrite the tracked docs/kiosk-qr.png (`make demo-screenshot` does)."""
    return paths.root / "kiosk-qr.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hwgate-demo", description=__doc__)
    parser.add_argument("--dir", default=".testbed", help="test bed directory")
    parser.add_argument(
        "--screenshot", type=Path, default=None, metavar="PNG",
        help="where to save the QR screen, the other steps' screens beside it (default: "
        "DIR/kiosk-qr.png, outside the tracked tree; make demo-screenshot refreshes "
        "docs/kiosk-*.png)",
    )  # fmt: skip
    parser.add_argument(
        "--interactive", action="store_true", help="serve for a person (make kiosk)"
    )
    # Set by hwgate_apps.kiosk_isolated: a listener bound on the host, and that this
    # process runs in a private namespace (its printed commands need nsenter).
    parser.add_argument("--kiosk-fd", type=int, metavar="FD", help=argparse.SUPPRESS)
    parser.add_argument("--private-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.interactive and (why := browser.chromium_missing()):
        print(f"hwgate-demo: {why}")
        return 1
    paths = TestbedPaths.at(args.dir)
    step(f"test bed up in {paths.root}")
    workdir = paths.root / "apps"
    try:
        orchestrate.up(paths, insert_card=False)
        if fresh_state(workdir):
            step(f"removed the previous runs' enrollment database from {workdir}")
        listener = None
        if args.kiosk_fd is not None:  # bound by hwgate_apps.kiosk_isolated in the host's netns
            listener = socket.socket(fileno=args.kiosk_fd)
        stack = start_stack(paths, workdir, kiosk_listener=listener)
    except (TestbedError, RuntimeError, OSError) as exc:  # e.g. a port in use, no pcscd
        print(f"hwgate-demo: cannot start the stack: {exc}", file=sys.stderr)
        if not args.interactive or args.private_namespace:
            orchestrate.down(paths)
        return 1
    step(f"hwgated, enrollment server {stack.enrollment_url}, kiosk {stack.kiosk_url}")
    try:
        code = 0
        if args.interactive:
            enter = nsenter_prefix() if args.private_namespace else ""
            bed = f"hwgate-testbed {{}} --dir {paths.root}"
            print(f"Open {stack.kiosk_url} and insert a card with:\n"
                  f"  {enter}{bed.format('insert')} --card alice   (PIN {PIV_PIN})\n"
                  f"  {enter}{bed.format('remove')}\nCtrl-C stops.", flush=True)  # fmt: skip
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
        else:
            code = drive(stack, args.screenshot or default_screenshot(paths))
    finally:
        stack.stop()
        # make kiosk in its own namespace: nobody can reach this bed once we are gone,
        # and its pcscd would outlive the namespace's last other process.
        if not args.interactive or args.private_namespace:
            orchestrate.down(paths)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
