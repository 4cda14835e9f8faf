"""``make demo`` and ``make kiosk``: the derived-credential flow on the test bed.

demo: test bed + hwgated + enrollment server + kiosk; headless Chromium inserts
the virtual card, enters the PIN, screenshots the QR screen, zbarimg decodes
it, the phone simulator redeems it. kiosk (``--interactive``): the same
services, left running for a person with a browser.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from cryptography import x509

from hwgate_apps import browser
from hwgate_apps.phone.qr import decode_png
from hwgate_apps.phone.wallet import activate, parse_payload
from hwgate_apps.stack import Stack, start_stack
from hwgate_testbed import orchestrate
from hwgate_testbed.paths import PIV_PIN, TestbedPaths


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run_demo(stack: Stack, screenshot: Path) -> None:
    paths = stack.paths
    with browser.kiosk_page(stack.kiosk_url) as page:
        browser.wait_screen(page, "insert")
        step(f"kiosk page open at {stack.kiosk_url}: 'Insert your card'")
        orchestrate.insert(paths, 0, "alice", None)
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
        print(f"    serial:  {cred.certificate.serial_number:x}")
        print(f"    policy:  {', '.join(cred.policy_oids)}")
        print(f"    SAN:     {cred.uuid_uri}")
        orchestrate.remove(paths, 0)
        browser.wait_screen(page, "insert")
        step("card removed: the kiosk is back at 'Insert your card'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hwgate-demo", description=__doc__)
    parser.add_argument("--dir", default=".testbed", help="test bed directory")
    parser.add_argument("--screenshot", type=Path, default=Path("docs/kiosk-qr.png"))
    parser.add_argument(
        "--interactive", action="store_true", help="serve for a person (make kiosk)"
    )
    args = parser.parse_args(argv)
    if not args.interactive and (why := browser.chromium_missing()):
        print(f"hwgate-demo: {why}")
        return 1
    paths = TestbedPaths.at(args.dir)
    step(f"test bed up in {paths.root}")
    orchestrate.up(paths, insert_card=False)
    stack = start_stack(paths, paths.root / "apps")
    step(f"hwgated, enrollment server {stack.enrollment_url}, kiosk {stack.kiosk_url}")
    try:
        if args.interactive:
            print(f"Open {stack.kiosk_url} and insert a card with:\n"
                  f"  hwgate-testbed insert --dir {paths.root} --card alice   (PIN {PIV_PIN})\n"
                  f"  hwgate-testbed remove --dir {paths.root}\nCtrl-C stops.")  # fmt: skip
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
        else:
            run_demo(stack, args.screenshot)
    finally:
        stack.stop()
        if not args.interactive:
            orchestrate.down(paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
