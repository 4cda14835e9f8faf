"""The suite's order independence, tested: the bed guard puts back what a test
changed, card changes wait for the daemon's own view, deadlines scale for load,
and a fresh card process is never taken for a dead one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import hypothesis.core
import pytest

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed import bedstate, pcscd, procs, slots
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.pytest_plugin import CardSlots, Testbed
from hwgate_testbed.timing import SCALE_ENV, scaled, timeout_scale
from support.daemon import start_daemon, write_config
from support.daemonview import DaemonView

R0, R1 = vpcd_reader(0), vpcd_reader(1)


def restorer(testbed: Testbed) -> bedstate.Restorer:
    return bedstate.Restorer(testbed.paths, (testbed.root,), time.monotonic() + scaled(30))


@pytest.mark.testbed
def test_a_card_left_in_is_removed_and_one_pulled_out_is_put_back(testbed: Testbed) -> None:
    at_rest = bedstate.snapshot()
    assert not any(s.present for s in at_rest.slots.values())
    slots.insert(testbed.paths, 1, "bob")  # leaked, as a test using slots directly might
    fixer = restorer(testbed)
    after = fixer.restore(at_rest)
    assert not after.slots[1].present
    assert fixer.done == ["card 'bob' left in slot 1: removed"] and not fixer.failed

    slots.insert(testbed.paths, 0, "alice")  # e.g. a module fixture's card...
    try:
        with_card = bedstate.snapshot()
        assert with_card.slots[0].card == "alice"
        slots.remove(testbed.paths, 0)  # ...that a test pulled and did not put back
        fixer = restorer(testbed)
        after = fixer.restore(with_card)
        assert after.slots[0].present and after.slots[0].card == "alice"
        assert after.slots[0].pid != with_card.slots[0].pid
        assert fixer.done == ["card 'alice' missing from slot 0: re-inserted"]
    finally:
        slots.remove(testbed.paths, 0)


@pytest.mark.testbed
def test_a_card_from_another_bed_of_this_session_is_removed_too(
    testbed: Testbed, tmp_path: Path
) -> None:
    """The virtual card of another test bed directory (the CLI tests make one) is
    this session's too: found by its vpcd port and card directory, and stopped."""
    at_rest = bedstate.snapshot()
    card = subprocess.Popen(slots.card_argv(testbed.paths.card_dir("alice"), 35964))
    try:
        pcscd.wait_for_reader_state(R1, True, time.monotonic() + scaled(30))
        fixer = restorer(testbed)
        after = fixer.restore(at_rest)
        assert not after.slots[1].present
        assert card.wait(timeout=scaled(10)) == 0  # stopped politely (SIGTERM)
    finally:
        if card.poll() is None:
            card.kill()
            card.wait()


@pytest.mark.testbed
def test_insert_returns_once_the_daemon_has_identified_the_card(
    testbed: Testbed, cards: CardSlots, tmp_path: Path
) -> None:
    config, kiosk, _ = write_config(tmp_path)
    daemon = start_daemon(config, kiosk, tmp_path / "hwgated.log")  # registered as observer
    try:
        with daemon.channel() as channel:
            stub = card_pb2_grpc.CardServiceStub(channel)
            cards.insert(0, "alice")
            # No wait here: the daemon already knows the card and who it is.
            reader = {r.name: r for r in stub.ListReaders(card_pb2.ListReadersRequest()).readers}
            assert reader[R0].state == card_pb2.READER_STATE_PRESENT
            assert reader[R0].HasField("card") and reader[R0].card.is_piv
            session = stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10)
            stub.CloseSession(card_pb2.CloseSessionRequest(session_id=session.session_id))
            cards.remove(0)
            reader = {r.name: r for r in stub.ListReaders(card_pb2.ListReadersRequest()).readers}
            assert reader[R0].state == card_pb2.READER_STATE_EMPTY
    finally:
        daemon.stop(signal.SIGKILL)


@pytest.mark.testbed
def test_a_daemon_that_never_sees_the_card_fails_the_wait_at_its_deadline(
    testbed: Testbed, cards: CardSlots, tmp_path: Path
) -> None:
    config, kiosk, _ = write_config(tmp_path, pcsc=f'readers = ["{R0}"]')
    daemon = start_daemon(config, kiosk, tmp_path / "hwgated.log")
    try:
        # A view that believes the daemon watches every reader waits in vain for R1.
        view = DaemonView("test", daemon.target, lambda: daemon.proc.poll() is None)
        cards.insert(1, "bob")  # the registered view knows the patterns: no wait for R1
        t0 = time.monotonic()
        with pytest.raises(AssertionError, match="did not report a card in Virtual PCD 00 01"):
            view.wait_reader(R1, True, time.monotonic() + 1.0)
        assert time.monotonic() - t0 < scaled(10)  # the deadline ended it, not a hang
    finally:
        daemon.stop(signal.SIGKILL)


def test_a_fresh_child_is_known_by_what_it_was_started_as(tmp_path: Path) -> None:
    """Between fork and exec (or, here, after an exec to another program) /proc
    shows other arguments than the child was started with; it is still ours."""
    marker = ("hwgate-marker-arg",)
    pid = procs.spawn_detached(["sh", "-c", "exec sleep 30", *marker], tmp_path / "log")
    try:
        deadline = time.monotonic() + scaled(10)
        while (procs.cmdline(pid) or [""])[0] != "sleep":  # the exec has happened
            assert time.monotonic() < deadline
            procs.wait_exit_or(pid, 0.01)
        assert procs.is_running(pid, marker)
    finally:
        assert procs.terminate(pid, marker, time.monotonic() + scaled(10))
    assert not procs.is_running(pid, marker)


def test_deadlines_scale_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCALE_ENV, raising=False)
    assert timeout_scale() == 1.0 and scaled(10) == 10
    monkeypatch.setenv(SCALE_ENV, "3")
    assert scaled(10) == 30
    for bad in ("fast", "0.5"):
        monkeypatch.setenv(SCALE_ENV, bad)
        with pytest.raises(ValueError, match=SCALE_ENV):
            timeout_scale()


def test_hypothesis_follows_the_random_order_seed(pytestconfig: pytest.Config) -> None:
    """One seed in the report header replays both the order and the examples."""
    seed = getattr(pytestconfig.option, "randomly_seed", None)
    if not isinstance(seed, int):
        pytest.skip("pytest-randomly is not active (-p no:randomly)")
    assert hypothesis.core.global_force_seed == seed


def test_the_seed_is_printed_so_a_failure_can_be_replayed() -> None:
    test = "tests/testbed/test_bed_guard.py::test_deadlines_scale_with_the_environment"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "--randomly-seed=12345",
         test],
        capture_output=True, text=True, timeout=120, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Using --randomly-seed=12345" in done.stdout
