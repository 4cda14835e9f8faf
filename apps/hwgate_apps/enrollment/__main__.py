"""``python -m hwgate_apps.enrollment --config enrollment.toml [--listen HOST:PORT]``.

Serves HTTPS with the given certificate; connects to hwgated over mTLS.
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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lifecycle"]:
        sys.exit(lifecycle_main(argv[1:]))
    parser = argparse.ArgumentParser(prog="hwgate-enrollment", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--listen", default="127.0.0.1:8443")
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    host, port = args.listen.rsplit(":", 1)
    app = make_app(load_config(args.config))
    uvicorn.run(
        app, host=host, port=int(port),
        ssl_certfile=str(args.tls_cert), ssl_keyfile=str(args.tls_key),
    )  # fmt: skip


if __name__ == "__main__":
    main()
