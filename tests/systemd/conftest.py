"""``make test-systemd`` only: these tests boot a container and take minutes.

They run when HWGATE_SYSTEMD_ROOTFS names the cached root file system (the
make target sets it, after building dist/, the wheelhouse and the tree); plain
``make test`` skips them.
"""

from __future__ import annotations

import os

import pytest

SYSTEMD_TIMEOUT = 900  # seconds: the first test also boots and installs


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "systemd: boots hwgated.service in a container (slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    enabled = bool(os.environ.get("HWGATE_SYSTEMD_ROOTFS"))
    skip = pytest.mark.skip(reason="make test-systemd only (HWGATE_SYSTEMD_ROOTFS unset)")
    for item in items:
        if item.get_closest_marker("systemd") is None:
            continue
        if enabled:
            item.add_marker(pytest.mark.timeout(SYSTEMD_TIMEOUT))
        else:
            item.add_marker(skip)
