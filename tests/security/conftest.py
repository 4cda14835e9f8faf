"""Fixtures for the security tests: a test PKI and a daemon with every listener kind.

Also registers the end-of-session secret scan (support.logscan) when the lead
has not wired it into the top-level conftest yet.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from security_support import Pki, SecurityDaemon, make_pki, start_security_daemon

from support import logscan

# max_message_bytes and the limits are small so the limit tests can cross them
# cheaply; nothing else in this directory comes near them.
SECURITY_DAEMON = "max_message_bytes = 65536"
SECURITY_LIMITS = "max_sessions_per_identity = 1\nmax_streams_per_connection = 4"


def pytest_configure(config: pytest.Config) -> None:
    logscan.ensure_registered(config)


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def secd(
    testbed: Any, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecurityDaemon]:
    """One daemon per module: starting one (HSM worker login included) costs seconds."""
    directory = tmp_path_factory.mktemp("secd")
    daemon = start_security_daemon(
        directory, testbed, pki, limits=SECURITY_LIMITS, daemon=SECURITY_DAEMON
    )
    yield daemon
    daemon.proc.stop(signal.SIGTERM)
