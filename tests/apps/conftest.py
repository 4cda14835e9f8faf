"""The reference stack (hwgated + enrollment server + kiosk) on the session's test bed.

One stack per module: hwgated start-up is paid once; each test inserts its own
card (``cards``), and the kiosk returns to "Insert your card" when it is removed.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator

import pytest

from hwgate_apps.enrollment.service import EnrollmentService
from hwgate_apps.stack import Stack, start_stack
from hwgate_testbed import postgres
from support.daemonview import process_alive, watch

TEST_DATABASE = "hwgate_tests"


@pytest.fixture(scope="module")
def stack(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    paths = testbed.paths  # type: ignore[attr-defined]
    workdir = tmp_path_factory.mktemp("apps")
    # The test bed's own config, with room for the many PIN checks of a test run.
    text = re.sub(r"verify_pin_per_minute = \d+", "verify_pin_per_minute = 10000",
                  paths.daemon_config.read_text())  # fmt: skip
    config = workdir / "hwgated.toml"
    config.write_text(text)
    running = start_stack(paths, workdir, enrollment_port=0, kiosk_port=0, daemon_config=config)
    # Every test of a module enrolls alice on the module's one enrollment database, in
    # random order: lift the per-cardholder cap so no test depends on how many ran
    # before it (the cap's own test lowers it to what it finds issued).
    service = running.extra["enrollment_app"].state.service
    service.config = dataclasses.replace(service.config, max_credentials_per_cardholder=10_000)
    try:
        with watch("stack hwgated", f"unix:{paths.kiosk_socket}", process_alive(running.hwgated)):
            yield running
    finally:
        running.stop()


@pytest.fixture
def service(stack: Stack) -> EnrollmentService:
    """The enrollment server's service object (to age a code or lower the cap)."""
    return stack.extra["enrollment_app"].state.service  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[postgres.Postgres]:
    """One private PostgreSQL cluster per test session (per xdist worker), started only
    when a test asks for it, stopped at the end."""
    with postgres.running(tmp_path_factory.mktemp("postgres")) as server:
        server.create_database(TEST_DATABASE)
        yield server


@pytest.fixture
def postgres_url(postgres_server: postgres.Postgres) -> str:
    """A fresh, empty schema of the session's test database (its URL sets search_path)."""
    return postgres_server.create_schema(TEST_DATABASE, f"t_{uuid.uuid4().hex[:16]}")
