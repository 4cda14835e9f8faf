"""pytest fixtures for the real test bed (pcscd + vpcd + virtual PIV cards + SoftHSM2).

`testbed` (session): one test bed in a session temp dir (or in $HWGATE_TESTBED_DIR,
reused across sessions to skip provisioning), pcscd started only if none
answers, token/PKI/configs written, the test bed's environment exported, no card
inserted. Torn down with `down` (only what it started is stopped).

`cards` (function): insert/remove cards; whatever a test inserted is removed at
teardown and waited for in pcscd, so tests do not depend on their order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hwgate_testbed import envfile, orchestrate, slots
from hwgate_testbed.paths import TestbedPaths
from hwgate_testbed.slots import CardHandle
from hwgate_testbed.softhsm import TokenInfo


@dataclass(frozen=True)
class Testbed:
    """A running test bed: its files, token and environment."""

    __test__ = False

    paths: TestbedPaths
    token: TokenInfo
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return self.paths.root

    def user_pin(self) -> str:
        return self.paths.user_pin.read_text().strip()


@dataclass
class CardSlots:
    """Inserts and removes virtual cards for one test; remembers what to clean up."""

    testbed: Testbed
    inserted: dict[int, CardHandle] = field(default_factory=dict)

    def insert(self, slot: int = 0, name: str = "alice", key_type: str | None = None) -> CardHandle:
        """Provision `name` once per test bed, insert it, return when pcscd sees it."""
        card = orchestrate.insert(self.testbed.paths, slot, name, key_type)
        self.inserted[slot] = card
        return card

    def remove(self, slot: int = 0) -> None:
        """Remove the card and return when pcscd reports the reader empty."""
        self.inserted.pop(slot, None)
        slots.remove(self.testbed.paths, slot)

    def remove_all(self) -> None:
        for slot in list(self.inserted):
            self.remove(slot)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed: needs the real test bed (pcscd + vpcd + SoftHSM2)")


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """The session's test bed (see the module doc)."""
    where = os.environ.get("HWGATE_TESTBED_DIR")
    root = Path(where) if where else tmp_path_factory.mktemp("testbed")
    paths = TestbedPaths.at(root)
    result = orchestrate.up(paths, insert_card=False)
    env = envfile.environment(paths)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            yield Testbed(paths, result.token, env)
        finally:
            orchestrate.down(paths)


@pytest.fixture
def cards(testbed: Testbed) -> Iterator[CardSlots]:
    """Card insertion for one test; everything it inserted is removed afterwards."""
    helper = CardSlots(testbed)
    try:
        yield helper
    finally:
        helper.remove_all()
