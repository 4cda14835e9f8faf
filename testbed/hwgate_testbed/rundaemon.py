"""`hwgate-testbed run`: the daemon on this test bed's config, in the foreground.

The test bed writes the daemon's config (``hwgated.toml``); the daemon reads
only ``--config``. Joining the two here, and not in ``hwgated``, keeps the
dependency one way: the daemon distribution neither imports nor needs the test
bed, and this verb runs whichever ``hwgated`` is installed beside it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hwgate_testbed.paths import TestbedPaths

DAEMON = "hwgated"


class DaemonNotFound(RuntimeError):
    """No ``hwgated`` beside this Python or on PATH."""


def find_daemon() -> str:
    """The ``hwgated`` of this environment, else the first on PATH.

    The console script beside ``sys.executable`` comes first so that a venv's
    ``hwgate-testbed`` runs that venv's daemon even when PATH names another.
    """
    beside = Path(sys.executable).parent / DAEMON
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(DAEMON)
    if found is None:
        raise DaemonNotFound(
            f"{DAEMON} is not installed beside the test bed "
            "(pip install hwgated, or hwgate-testbed[daemon])"
        )
    return found


def daemon_argv(paths: TestbedPaths, log_level: str | None = None) -> list[str]:
    """The command line that runs the daemon on *paths*' config."""
    argv = [find_daemon(), "--config", str(paths.daemon_config)]
    if log_level:
        argv += ["--log-level", log_level]
    return argv


def exec_daemon(argv: list[str]) -> None:
    """Replace this process with the daemon (signals and exit status are its own)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
