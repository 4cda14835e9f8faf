"""``python -m hwgate_apps.kiosk --enrollment-url URL --enrollment-cert F --enrollment-key F
[--hwgate unix:///…] [--listen …]``."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from hwgate_apps.kiosk.server import make_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hwgate-kiosk", description=__doc__)
    parser.add_argument("--hwgate", default=None, help="hwgated kiosk socket (unix:///path)")
    parser.add_argument("--enrollment-url", required=True)
    parser.add_argument("--enrollment-ca", default=None, help="CA file for the server's TLS")
    parser.add_argument("--enrollment-cert", default=None, help="this kiosk's client certificate")
    parser.add_argument("--enrollment-key", default=None, help="its private key")
    parser.add_argument("--reader", default="*", help="reader name pattern")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="localhost only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    host, port = args.listen.rsplit(":", 1)
    app = make_app(args.hwgate, args.enrollment_url, args.enrollment_ca, args.reader,
                   args.enrollment_cert, args.enrollment_key)  # fmt: skip
    uvicorn.run(app, host=host, port=int(port), timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
