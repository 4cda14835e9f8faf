"""Fixtures: a real hwgated serving the test bed's SoftHSM2 token (see hsm_service_support)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hsm_service_support import HsmDaemon, start_hsm_daemon


@pytest.fixture(scope="module")
def hsmd(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HsmDaemon]:
    """The shared daemon for tests that leave it intact."""
    daemon = start_hsm_daemon(tmp_path_factory.mktemp("hsmd"), testbed)
    yield daemon
    daemon.proc.stop(signal.SIGTERM)


@pytest.fixture
def own_hsmd(testbed: object, tmp_path: Path) -> Iterator[HsmDaemon]:
    """A daemon this test may damage (kill workers); stopped after it."""
    daemon = start_hsm_daemon(tmp_path / "d", testbed)
    yield daemon
    daemon.proc.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def tpm2_token(testbed: object) -> Iterator[object]:
    """The second PKCS#11 implementation (tpm2-pkcs11 over swtpm + tpm2-abrmd on a
    private bus), started on first use only: bring-up costs 1-2 s. Stopped at the end
    of the session (the bed's own `down` would stop it too)."""
    from hwgate_testbed import orchestrate, tpm2token

    paths = testbed.paths  # type: ignore[attr-defined]
    token = orchestrate.tpm2_up(paths)
    yield token
    tpm2token.down(paths)
