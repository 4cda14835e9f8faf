"""``make demo`` and ``make kiosk``: the derived-credential flow on the test bed.

demo: test bed + hwgated + enrollment server + kiosk; headless Chromium inserts
the virtual card, enters the PIN, screenshots the QR screen, zbarimg decodes
it, the phone simulator redeems it. kiosk (``--interactive``): the same
services, left running for a person with a browser.

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
import sys
import threading
from pathlib import Path
from typing import Any

from cryptography import x509

from hwgate.certfmt import serial_hex
from hwgate_apps import browser
from hwgate_apps.phone.qr import QrError, decode_png
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


def run_demo(stack: Stack, screenshot: Path) -> None:
    """The flow, start to end; raises browser.PageError when the page goes elsewhere."""
    paths = stack.paths
    with browser.kiosk_page(stack.kiosk_url) as page:
        browser.wait_screen(page, "insert")
        step(f"kiosk page open at {stack.kiosk_url}: 'Insert your card'")
        orchestrate.insert(paths, 0, "alice", None)
        try:
            _with_card(stack, page, screenshot)
        finally:
            orchestrate.remove(paths, 0)  # also when it failed: the next run starts clean
        browser.wait_screen(page, "insert")
        step("card removed: the kiosk is back at 'Insert your card'")


def _with_card(stack: Stack, page: Any, screenshot: Path) -> None:
    """With the card in: PIN, request, QR screen, screenshot, decode, the phone redeems."""
    paths = stack.paths
    browser.wait_screen(page, "pin")
    step(f"card detected: {page.text_content('#s-pin .name')}; entering the PIN on the pad")
    browser.enter_pin(page, PIV_PIN)
    browser.wait_screen(page, "ready")
    step("PIN accepted; pressing 'Request mobile credential'")
    page.click("#request")
    browser.wait_screen(page, "qr")
    code = page.text_content("#code")
    step(f"QR screen shown, activation code {code}")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    step(f"screenshot saved: {screenshot}")
    payload = decode_png(screenshot)
    step(f"zbarimg decoded the QR code: {payload.split('code=')[0]}code=…")
    anchor = x509.load_pem_x509_certificate(paths.pki_cert("issuing-ca").read_bytes())
    cred = activate(parse_payload(payload), anchor, stack.tls_ca)
    step("phone: P-256 key made on the phone, CSR sent, chain verified up to the HSM CA")
    print(f"    subject: {cred.certificate.subject.rfc4514_string()}")
    print(f"    serial:  {serial_hex(cred.certificate.serial_number)}")
    print(f"    policy:  {', '.join(cred.policy_oids)}")
    print(f"    SAN:     {cred.uuid_uri}")


def drive(stack: Stack, screenshot: Path) -> int:
    """run_demo with its expected failures as one line on stderr; the exit code."""
    try:
        run_demo(stack, screenshot)
    except (browser.PageError, ActivationError, QrError, TestbedError) as exc:
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
        help="where to save the QR screen (default: DIR/kiosk-qr.png, outside the tracked "
        "tree; make demo-screenshot refreshes docs/kiosk-qr.png)",
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
        if not args.interactive:
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
        if not args.interactive:
            orchestrate.down(paths)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
