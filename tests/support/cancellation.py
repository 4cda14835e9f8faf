"""A seeded, replayable cancellation harness for the calls that take a reader.

Each round picks an RPC that takes the reader lock or creates state
(OpenSession, a one-shot Transmit, GetCardInfo on a reader), sends it, and
ends it from the client side at a random point: a cancel 0-50 ms after sending
(before, during or after the lock, during identification), or a deadline that
short. Rounds run in phases: card present, card being inserted (identification
in progress), card being pulled. Calls that do succeed hand their sessions to
the harness, which closes them, as a real client would.

Afterwards :func:`run_harness` asserts what issue #25 asks: a fresh caller
gets the reader within a short deadline, no session is held that no caller
holds, and the daemon's threads and file descriptors are back to baseline.

One race is gRPC's, not the daemon's, and the CardService proto documents it:
a response the server has already sent when the client's cancel or deadline
fires is a session the server handed over and the client never saw; it ends at
its TTL. On a loaded machine (``make test-stress``) the client's handling of a
received response can lag by tens of milliseconds, and that window was hit
once in about ten stress runs. So after every phase the harness checks that the
reader is free again; a session left that no caller holds is counted and waited
out (its TTL is short: :data:`HARNESS_TTL`), and the run allows at most one.
The bug this guards against (no session closed when the server saw the cancel)
leaves one in most phases, as it did on the code before the fix.

Replay a failure with ``HWGATE_CANCEL_SEED=<seed printed by the test>``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2, piv_pb2_grpc
from support.daemon import DaemonProc, start_daemon, write_config
from support.events import EventCollector, is_event

R0 = "Virtual PCD 00 00"
# The daemon's max_session_ttl for the harness: long enough that an orphaned
# session outlives the fresh caller's deadline.
SESSION_TTL = 60
# The ttl the harness asks for: how long a session lost to gRPC's race holds the
# reader before the daemon ends it (the harness closes the ones it got at once).
HARNESS_TTL = 4.0
# Sessions left that no caller holds, allowed per run (the documented race).
RACED_SESSIONS_ALLOWED = 1
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")


def harness_daemon(directory: Path) -> DaemonProc:
    """A hwgated for the harness: sessions live long enough to tell an orphan apart."""
    config, kiosk, _ = write_config(
        directory, pcsc=f"max_session_ttl = {SESSION_TTL}", log_level="info"
    )
    return start_daemon(config, kiosk, directory / "hwgated.log")


def seed_from_env() -> int:
    value = os.environ.get("HWGATE_CANCEL_SEED")
    return int(value) if value else random.SystemRandom().randrange(2**32)


def scale() -> float:
    """Deadline factor for a loaded machine (make test-stress sets it)."""
    return float(os.environ.get("HWGATE_TEST_TIMEOUT_SCALE", "1"))


@dataclass
class Harness:
    """Fires cancelled calls at one reader of one daemon."""

    channel: grpc.Channel
    rng: random.Random
    reader: str = R0
    held: list[str] = field(default_factory=list)  # sessions the harness really got
    outcomes: dict[str, int] = field(default_factory=dict)
    raced: int = 0  # phases after which a session no caller holds had to be waited out

    def __post_init__(self) -> None:
        self.card = card_pb2_grpc.CardServiceStub(self.channel)
        self.piv = piv_pb2_grpc.PivServiceStub(self.channel)

    def _call(self) -> tuple[str, Any]:
        kind = self.rng.choice(["open", "open", "transmit", "info"])
        if kind == "open":
            ttl = duration_pb2.Duration()
            ttl.FromMilliseconds(int(HARNESS_TTL * 1000))
            request = card_pb2.OpenSessionRequest(reader=self.reader, ttl=ttl)
            return kind, (self.card.OpenSession, request)
        if kind == "transmit":
            req = card_pb2.TransmitRequest(reader=self.reader, apdus=[SELECT_PIV])
            return kind, (self.card.Transmit, req)
        return kind, (self.piv.GetCardInfo, piv_pb2.GetCardInfoRequest(reader=self.reader))

    def fire(self) -> None:
        """One call, ended by the client at a random point."""
        kind, (method, request) = self._call()
        delay = self.rng.uniform(0.002, 0.050)
        if self.rng.random() < 0.5:
            future = method.future(request)
            time.sleep(delay)  # fault injection: where the cancel lands, not a wait
            future.cancel()
            how = "cancel"
        else:
            future = method.future(request, timeout=delay)
            how = "deadline"
        try:
            response = future.result()
        except grpc.FutureCancelledError:
            outcome = "CANCELLED"
        except grpc.RpcError as err:
            outcome = err.code().name
        else:
            outcome = "OK"
            if kind == "open":
                self.held.append(response.session_id)
        key = f"{kind}/{how}/{outcome}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def fire_many(self, count: int) -> None:
        for _ in range(count):
            self.fire()
        self.release_held()

    def fire_during(self, action: Callable[[], None], count: int) -> None:
        """Cancelled calls while *action* (an insertion, a pull) runs in a thread."""
        worker = threading.Thread(target=action)
        worker.start()
        try:
            while worker.is_alive() and count > 0:
                self.fire()
                count -= 1
        finally:
            worker.join(60)
        self.release_held()

    def release_held(self) -> None:
        for session_id in self.held:
            try:
                self.card.CloseSession(
                    card_pb2.CloseSessionRequest(session_id=session_id), timeout=10 * scale()
                )
            except grpc.RpcError as err:  # a pulled card ended it already
                assert err.code() == grpc.StatusCode.NOT_FOUND, err
        self.held.clear()
        self.check_reader_free()

    def _session_held(self) -> bool:
        readers = self.card.ListReaders(card_pb2.ListReadersRequest(), timeout=10 * scale())
        return any(r.session_held for r in readers.readers if r.name == self.reader)

    def check_reader_free(self) -> None:
        """After a phase the harness holds nothing, so no session may hold the reader.

        The daemon closes a session whose caller cancelled as soon as gRPC tells it
        the call ended (a done callback on the loop), so that gets a short deadline.
        A session still held past it is one the server handed over (the race in the
        module docstring): it must end by its TTL; it is counted.
        """
        if not self._wait_free(1.0 * scale()):
            self.raced += 1
            if not self._wait_free(HARNESS_TTL + 5.0 * scale()):
                raise AssertionError(
                    f"a session no caller holds kept {self.reader!r} past its "
                    f"{HARNESS_TTL:.0f} s ttl; outcomes {sorted(self.outcomes.items())}"
                )

    def _wait_free(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._session_held():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # polling the daemon's own view, with a deadline
        return True


def process_counts(pid: int) -> tuple[int, int]:
    """(threads, open fds) of process *pid*."""
    return (
        len(os.listdir(f"/proc/{pid}/task")),
        len(os.listdir(f"/proc/{pid}/fd")),
    )


def children(pid: int) -> int:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return len(path.read_text().split()) if path.exists() else 0


def wait_back_to_baseline(
    pid: int, baseline: tuple[int, int, int], slack: tuple[int, int, int], timeout: float
) -> tuple[int, int, int]:
    """Poll the daemon's own counts until they are within *slack* of *baseline*."""
    deadline = time.monotonic() + timeout
    while True:
        now = (*process_counts(pid), children(pid))
        if all(n <= b + s for n, b, s in zip(now, baseline, slack, strict=True)):
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def run_harness(daemon: DaemonProc, cards: object, rounds: int) -> None:
    seed = seed_from_env()
    print(f"cancellation harness: HWGATE_CANCEL_SEED={seed} rounds={rounds}")
    rng = random.Random(seed)
    admin = grpc.insecure_channel(f"unix:{daemon.socket.parent / 'admin.sock'}")
    harness = Harness(admin, rng)
    watcher = EventCollector(daemon.channel())
    watcher.snapshot()

    def insert() -> None:
        cards.insert(0, "alice")  # type: ignore[attr-defined]

    def pull() -> None:
        cards.remove(0)  # type: ignore[attr-defined]

    insert()
    watcher.wait_for(is_event("CARD_INSERTED", R0), timeout=30 * scale())
    harness.fire_many(5)  # warm-up: grpc and worker threads that stay for good
    pid = daemon.proc.pid
    baseline = (*process_counts(pid), children(pid))

    for _ in range(rounds):
        phase = rng.choice(["present", "inserting", "pulling"])
        if phase == "present":
            harness.fire_many(rng.randint(3, 8))
        elif phase == "pulling":
            harness.fire_during(pull, rng.randint(3, 8))
            harness.fire_many(2)  # against the empty reader
            harness.fire_during(insert, rng.randint(3, 8))
        else:  # the bug-1 path: cancels while the new card is being identified
            pull()
            harness.fire_during(insert, rng.randint(3, 8))

    # The card must be in and identified for the invariants below.
    stub = harness.card
    readers = stub.ListReaders(card_pb2.ListReadersRequest(), timeout=30 * scale()).readers
    if not [r for r in readers if r.name == R0 and r.card.is_piv]:
        watcher.wait_for(is_event("CARD_INSERTED", R0), timeout=30 * scale())
    watcher.cancel()

    context = (
        f"seed {seed}, outcomes {sorted(harness.outcomes.items())}, "
        f"phases that left a session no caller holds: {harness.raced}"
    )
    # 0. gRPC's race (module docstring) at most once per run; the bug it would
    # hide leaves such a session after most phases.
    assert harness.raced <= RACED_SESSIONS_ALLOWED, context
    if harness.raced:
        print(f"cancellation harness: {harness.raced} phase(s) left a session no caller holds")
    # 1. A fresh caller gets the reader at once (not after a TTL, not never).
    try:
        fresh = stub.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=3 * scale())
    except grpc.RpcError as err:
        raise AssertionError(f"reader not usable after the harness: {err}; {context}") from None
    readers = stub.ListReaders(card_pb2.ListReadersRequest(), timeout=10 * scale()).readers
    assert [r.session_held for r in readers if r.name == R0] == [True], context
    stub.CloseSession(card_pb2.CloseSessionRequest(session_id=fresh.session_id), timeout=10)
    # 2. No session that no caller holds.
    readers = stub.ListReaders(card_pb2.ListReadersRequest(), timeout=10 * scale()).readers
    assert not any(r.session_held for r in readers), context
    # 3. Threads, fds and children back to baseline (grpc may keep a few threads).
    now = wait_back_to_baseline(pid, baseline, (4, 4, 0), timeout=15 * scale())
    assert all(n <= b + s for n, b, s in zip(now, baseline, (4, 4, 0), strict=True)), (
        f"threads/fds/children {now} vs baseline {baseline}; {context}"
    )
    admin.close()
