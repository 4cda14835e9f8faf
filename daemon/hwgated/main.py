"""``hwgated`` command line: ``--config FILE`` or ``--testbed``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from hwgated import __version__
from hwgated.auth.listeners import ListenerError
from hwgated.config import LOG_LEVELS, ConfigError, load_config
from hwgated.hsm.config import TokenConfigError
from hwgated.logsetup import setup_logging

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwgated",
        description="Hardware-gateway daemon: PC/SC readers and PKCS#11 HSMs over gRPC.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="the daemon config (TOML)")
    source.add_argument(
        "--testbed",
        action="store_true",
        help="run on the test bed's config (brings the test bed up if needed)",
    )
    parser.add_argument(
        "--testbed-dir",
        type=Path,
        default=Path(os.environ.get("HWGATE_TESTBED_DIR", ".testbed")),
        help="test bed directory for --testbed (default: $HWGATE_TESTBED_DIR or ./.testbed)",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="overrides the config")
    parser.add_argument("--version", action="version", version=f"hwgated {__version__}")
    return parser


def _testbed_config(directory: Path) -> Path:
    """The test bed's daemon config, bringing the test bed up first if it is not."""
    config = directory / "hwgated.toml"
    if not config.exists():
        from hwgate_testbed.cli import main as testbed_main

        if testbed_main(["up", "--dir", str(directory)]) != 0:
            raise ConfigError(f"{directory}: the test bed could not be brought up")
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        path = _testbed_config(args.testbed_dir) if args.testbed else args.config
        config = load_config(path)
    except ConfigError as exc:
        print(f"hwgated: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        where = args.testbed_dir if args.testbed else args.config
        print(f"hwgated: {where}: cannot load the config: {exc!r}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.log_level or config.daemon.log_level, config.daemon.log_target)
    from hwgated.server import serve

    try:
        asyncio.run(serve(config, args.log_level))
    except (ListenerError, ConfigError, TokenConfigError) as exc:
        logging.getLogger("hwgated").error("%s", exc)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
