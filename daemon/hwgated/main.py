"""``hwgated`` command line: ``--config FILE``.

The daemon knows nothing about the test bed: ``hwgate-testbed run --dir DIR``
brings a bed up and execs ``hwgated --config DIR/hwgated.toml``, so the daemon
distribution never imports (or depends on) the test bed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hwgated import __version__
from hwgated.auth.listeners import ListenerError
from hwgated.config import LOG_LEVELS, ConfigError, load_config
from hwgated.hsm.config import TokenConfigError
from hwgated.logsetup import effective_level, setup_logging

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwgated",
        description="Hardware-gateway daemon: PC/SC readers and PKCS#11 HSMs over gRPC.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        help="the daemon config (TOML); on the test bed: hwgate-testbed run --dir DIR",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="wins over [daemon] log_level, also after a SIGHUP reload",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config (schema, referenced files, their modes) and exit: 0 or 2",
    )
    parser.add_argument("--version", action="version", version=f"hwgated {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hwgated: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        print(f"hwgated: {args.config}: cannot load the config: {exc!r}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:  # before an upgrade's restart, or after editing the file
        print(f"{args.config}: OK")
        return 0
    level = effective_level(args.log_level, config.daemon.log_level)
    setup_logging(level, config.daemon.log_target)
    from hwgated.ops import eventloop
    from hwgated.server import serve

    try:
        eventloop.run(serve(config, args.log_level), config.daemon.event_loop)
    except (ListenerError, ConfigError, TokenConfigError) as exc:
        logging.getLogger("hwgated").error("%s", exc)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
