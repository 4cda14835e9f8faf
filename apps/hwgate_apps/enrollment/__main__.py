"""``python -m hwgate_apps.enrollment --config enrollment.toml [--listen HOST:PORT]``.

Serves HTTPS with the given certificate, asking kiosks and administrators for
client certificates from the config's ``client_ca``; connects to hwgated over
mTLS. ``--fd N`` serves on an inherited listening socket instead (tests bind
it first, so clients may connect before the server has started).
``hwgate-enrollment lifecycle --config enrollment.toml`` runs the lifecycle job
once (see :mod:`.lifecycle`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from hwgate_apps.enrollment.config import load_config
from hwgate_apps.enrollment.lifecycle import main as lifecycle_main
from hwgate_apps.enrollment.server import make_app
from hwgate_apps.enrollment.transport import server_tls


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lifecycle"]:
        sys.exit(lifecycle_main(argv[1:]))
    parser = argparse.ArgumentParser(prog="hwgate-enrollment", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--listen", default="127.0.0.1:8443")
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    parser.add_argument("--fd", type=int, default=None, help="inherited listening socket")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    host, port = args.listen.rsplit(":", 1)
    config = load_config(args.config)
    app = make_app(config)
    where = {"fd": args.fd} if args.fd is not None else {"host": host, "port": int(port)}
    uvicorn.run(app, **where, **server_tls(config, str(args.tls_cert), str(args.tls_key)))


if __name__ == "__main__":
    main()
