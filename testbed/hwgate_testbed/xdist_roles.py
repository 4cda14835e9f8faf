"""Which side of a pytest-xdist run this process is, for plugins that gather results.

Under `make test` as root the suite runs in pytest-xdist workers, each in its own
namespace with its own test bed (see the Makefile). A session-end check that a
worker makes (the secret scan, the bed guard's record of leaky tests) happens in
the worker, whose terminal output nobody sees: the worker hands its result to the
controller through ``config.workeroutput`` and the controller reports them all.
Without xdist (or with ``-p no:xdist``) the process is neither and does both.
"""

from __future__ import annotations

from typing import Any

import pytest


def is_worker(config: pytest.Config) -> bool:
    """True in an xdist worker (it has ``workerinput``)."""
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    """True in the xdist controller, which runs no tests itself."""
    dist = getattr(config.option, "dist", "no")
    return not is_worker(config) and dist not in (None, "no")


def worker_id() -> str | None:
    """gw0, gw1, ... in a worker; None elsewhere (xdist sets the variable)."""
    import os

    return os.environ.get("PYTEST_XDIST_WORKER")


def hand_to_controller(config: pytest.Config, key: str, value: Any) -> None:
    """In a worker, send *value* (plain data) to the controller under *key*."""
    output = getattr(config, "workeroutput", None)
    if output is not None:
        output[key] = value


def from_worker(node: Any, key: str) -> Any:
    """What a worker node handed over under *key* (None if nothing)."""
    output = getattr(node, "workeroutput", None) or {}
    return output.get(key)
