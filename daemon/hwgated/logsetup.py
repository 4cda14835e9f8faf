"""Logging: human-readable stderr by default (journald comes with the operations work)."""

from __future__ import annotations

import logging
import sys

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def setup_logging(level: str) -> None:
    """Configure the root logger once; later calls only change the level (SIGHUP)."""
    root = logging.getLogger()
    if not any(getattr(h, "_hwgate", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        handler._hwgate = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(_LEVELS[level])
