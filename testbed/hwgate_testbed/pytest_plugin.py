"""pytest fixtures for the real test bed (pcscd + vpcd + virtual PIV cards + SoftHSM2).

`testbed` (session): one test bed in a session temp dir (or in $HWGATE_TESTBED_DIR,
reused across sessions to skip provisioning), pcscd started only if none
answers, token/PKI/configs written, the test bed's environment exported, no card
inserted. Torn down with `down` (only what it started is stopped).

`cards` (function): insert/remove cards; whatever a test inserted is removed at
teardown. Each insert/remove returns once pcscd *and every registered observer*
(`observers`: e.g. a running hwgated, through its own API) report the new state,
so a test's next call never races the daemon's view of the reader.

The bed guard (autouse, once the test bed is up): a snapshot of the bed before
each test and before each module; afterwards anything that differs (a card left
in or pulled out, pcscd stopped, a session left open on a shared daemon) is put
back and reported in the terminal summary, so no test depends on the order the
suite runs in. What cannot be put back fails the test.

Deadlines are scaled by HWGATE_TEST_TIMEOUT_SCALE (see `hwgate_testbed.timing`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from hwgate_testbed import bedstate, envfile, orchestrate, slots, xdist_roles
from hwgate_testbed import cards as card_store
from hwgate_testbed.paths import TestbedPaths, vpcd_reader
from hwgate_testbed.slots import CardHandle
from hwgate_testbed.softhsm import TokenInfo
from hwgate_testbed.timing import scaled

RESTORE_TIMEOUT = 30.0  # seconds (scaled) to put the bed back after one test
OBSERVER_TIMEOUT = 15.0  # seconds (scaled) for an observer to see a card change
# pcscd reports a change in well under a second on an idle machine; on a busy one
# a card process can take seconds to start or stop. Only a failure waits this long.
CARD_TIMEOUT = 30.0  # seconds (scaled) for pcscd to see a card inserted or removed


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


class BedObserver(Protocol):
    """Something with its own view of the readers (a running hwgated): card changes
    are complete only once it has seen them."""

    name: str

    def alive(self) -> bool:
        """False once it has stopped (then it is not waited on)."""
        ...

    def wait_reader(self, reader: str, present: bool, deadline: float) -> None:
        """Return once it reports *reader* with a card (identified) or empty; raise
        AssertionError at the monotonic *deadline*."""
        ...

    def sessions_held(self) -> list[str]:
        """Readers on which it holds a session now."""
        ...


class Observers:
    """The observers registered now (fixtures add theirs for the life of a daemon)."""

    def __init__(self) -> None:
        self._items: list[BedObserver] = []

    def add(self, observer: BedObserver) -> None:
        self._items.append(observer)

    def discard(self, observer: BedObserver) -> None:
        with contextlib.suppress(ValueError):
            self._items.remove(observer)

    @contextlib.contextmanager
    def watching(self, observer: BedObserver) -> Iterator[BedObserver]:
        self.add(observer)
        try:
            yield observer
        finally:
            self.discard(observer)

    def live(self) -> list[BedObserver]:
        """The observers still running (stopped ones are forgotten)."""
        self._items = [o for o in self._items if o.alive()]
        return list(self._items)

    def wait_reader(self, reader: str, present: bool, timeout: float = OBSERVER_TIMEOUT) -> None:
        deadline = time.monotonic() + scaled(timeout)
        for observer in self.live():
            observer.wait_reader(reader, present, deadline)


observers = Observers()


@dataclass
class CardSlots:
    """Inserts and removes virtual cards for one test; remembers what to clean up."""

    testbed: Testbed
    inserted: dict[int, CardHandle] = field(default_factory=dict)
    watchers: Observers = field(default_factory=lambda: observers)

    def insert(
        self,
        slot: int = 0,
        name: str = "alice",
        key_type: str | None = None,
        profile: str | None = None,
    ) -> CardHandle:
        """Provision `name` once per test bed, insert it (with quirk `profile`, see
        ``hwgate_testbed.vcard.quirks``), return when pcscd and every observer (a
        running daemon) see it."""
        paths = self.testbed.paths
        if slot < 0:
            raise orchestrate.TestbedError(f"bad slot {slot}")
        try:
            card_store.ensure_card(paths, name, key_type)
            card = slots.insert(paths, slot, name, timeout=scaled(CARD_TIMEOUT), profile=profile)
        except (card_store.CardError, slots.SlotBusy) as exc:
            raise orchestrate.TestbedError(str(exc)) from exc
        self.inserted[slot] = card
        self.watchers.wait_reader(card.reader, True)
        return card

    def remove(self, slot: int = 0) -> None:
        """Remove the card; return when pcscd and every observer report the reader empty."""
        self.inserted.pop(slot, None)
        slots.remove(self.testbed.paths, slot, timeout=scaled(CARD_TIMEOUT))
        self.watchers.wait_reader(vpcd_reader(slot), False)

    def remove_all(self) -> None:
        for slot in list(self.inserted):
            self.remove(slot)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed: needs the real test bed (pcscd + vpcd + SoftHSM2)")
    config.pluginmanager.register(_guard, "hwgate-bed-guard")


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """The session's test bed (see the module doc)."""
    where = os.environ.get("HWGATE_TESTBED_DIR")
    worker = xdist_roles.worker_id()
    if where and worker:  # parallel workers never share a bed: one under it each
        where = str(Path(where) / worker)
    root = Path(where) if where else tmp_path_factory.mktemp("testbed")
    paths = TestbedPaths.at(root)
    result = orchestrate.up(paths, insert_card=False)
    env = envfile.environment(paths)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        bed = Testbed(paths, result.token, env)
        _guard.activate(bed, tmp_path_factory.getbasetemp())
        try:
            yield bed
        finally:
            _guard.deactivate()
            orchestrate.down(paths)


@pytest.fixture
def cards(testbed: Testbed) -> Iterator[CardSlots]:
    """Card insertion for one test; everything it inserted is removed afterwards."""
    helper = CardSlots(testbed)
    try:
        yield helper
    finally:
        helper.remove_all()


class BedGuard:
    """Snapshots and restores the bed around every module and test (see the module doc)."""

    def __init__(self) -> None:
        self.bed: Testbed | None = None
        self.owned: tuple[Path, ...] = ()
        self.restored: list[tuple[str, list[str]]] = []  # (node id, what was put back)
        self.at_rest = bedstate.BedState(True, ())  # the bed as `up` leaves it

    def activate(self, bed: Testbed, basetemp: Path) -> None:
        self.bed = bed
        self.owned = (basetemp.resolve(), bed.paths.root.resolve())
        self.at_rest = bedstate.snapshot()

    def deactivate(self) -> None:
        self.bed = None

    def before(self) -> bedstate.BedState | None:
        return bedstate.snapshot() if self.bed is not None else None

    def after(self, nodeid: str, before: bedstate.BedState | None) -> None:
        """Put the bed back as *before* (the bed at rest if it came up meanwhile)."""
        if self.bed is None:
            return
        restorer = bedstate.Restorer(
            self.bed.paths, self.owned, time.monotonic() + scaled(RESTORE_TIMEOUT)
        )
        final = restorer.restore(before if before is not None else self.at_rest)
        for slot in final.slots.values():  # the next test starts with settled daemons
            observers.wait_reader(vpcd_reader(slot.slot), slot.present)
        self._end_sessions(restorer, final)
        if restorer.done:
            self.restored.append((nodeid, restorer.done))
        if restorer.failed:
            pytest.fail(f"the test bed could not be restored after {nodeid}: {restorer.failed}")

    def _end_sessions(self, restorer: bedstate.Restorer, final: bedstate.BedState) -> None:
        """A session left open on a shared daemon would block the next test: pulling
        and re-inserting the card ends it (as it would on a real reader)."""
        for observer in observers.live():
            for reader in observer.sessions_held():
                slot = bedstate.vpcd_slot(reader)
                state = final.slots.get(slot) if slot is not None else None
                if state is None or not state.present:
                    continue
                restorer.done.append(f"session left open on {reader} ({observer.name})")
                restorer.cycle(state)
                observers.wait_reader(reader, True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        xdist_roles.hand_to_controller(session.config, _RESTORED_KEY, self.restored)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        """The controller gathers what each worker's guard put back."""
        for nodeid, done in xdist_roles.from_worker(node, _RESTORED_KEY) or ():
            self.restored.append((nodeid, list(done)))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.restored:
            return
        terminalreporter.section("test bed restored after these tests (they leak state)")
        for nodeid, done in self.restored:
            terminalreporter.line(f"{nodeid}: {'; '.join(done)}")


_RESTORED_KEY = "hwgate_bed_restored"
_guard = BedGuard()


@pytest.fixture(autouse=True, scope="module")
def _bed_guard_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Catches what a module's own fixtures leave behind (they end after its tests)."""
    before = _guard.before()
    yield
    _guard.after(f"{request.node.nodeid} (module fixtures)", before)


@pytest.fixture(autouse=True)
def _bed_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    before = _guard.before()
    yield
    _guard.after(request.node.nodeid, before)
