"""Soak: 50 concurrent clients against one hwgated while cards come and go.

The clients live in separate processes (their own GILs, like real apps) and mix
unary HSM Sign, SignStream, Transmit batches on two readers, card sessions
(open, transmit, close) and WatchEvents subscribers; the parent pulls and
re-inserts a card every few seconds and samples the daemon's RSS. It passes when:

- no call failed for a reason other than the card being pulled (CARD_REMOVED,
  CARD_NOT_PRESENT, and SESSION_NOT_FOUND for a session whose card went away);
- every signature a client got verifies;
- every subscriber (no filters) saw a gap-free run of sequence numbers up to the
  last event of the run;
- RSS is flat over the second half (least-squares fit grows by at most 2 MB);
- at the end the thread count is back to its warmed-up baseline and no reader is
  held by a session.

Lives with the test helpers so tests/drill/test_soak_short.py runs it without
importing bench/; the full-length soak is bench/soak.py
(``testbed/isolated .venv/bin/python -m bench.soak [--seconds 60]``, ``make soak``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from hwgate.errors import from_status_message
from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed import pcscd, slots
from hwgate_testbed.paths import TestbedPaths, vpcd_reader

from . import harness

KINDS = ("sign", "stream", "transmit", "session", "watch")
EXPECTED_CARD_ERRORS = {"CARD_REMOVED", "CARD_NOT_PRESENT", "SESSION_NOT_FOUND"}
RSS_GROWTH_LIMIT = 2.0  # MB: fitted growth across the second half (allocator noise is ~1)
CHURN_PERIOD = 3.0  # seconds between card removals/insertions
STREAM_WINDOW = 16
CARD_BACKOFF = 0.1  # seconds a card client pauses after the card went away


@dataclass
class ClientReport:
    """What one client did; the parent judges it."""

    kind: str
    index: int
    ok: int = 0
    expected: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    sequences: list[int] = field(default_factory=list)


# --- clients (in the load processes) ----------------------------------------------------


class Client:
    """One simulated application: loops its kind of work until *stop*."""

    def __init__(self, kind: str, index: int, target: str, stop: Any, final: Any) -> None:
        self.report = ClientReport(kind, index)
        self.channel = grpc.insecure_channel(target)
        self.card = card_pb2_grpc.CardServiceStub(self.channel)
        self.hsm = hsm_pb2_grpc.HsmServiceStub(self.channel)
        self.stop = stop
        self.final = final  # the last event sequence of the run, once known (0 before)
        self.reader = harness.READERS[index % 2]
        self.label = harness.EC_KEY if index % 2 else harness.RSA_KEY
        self.keys: dict[str, Any] = {}

    def failed(self, err: grpc.RpcError, card_call: bool) -> None:
        reason = harness.error_reason(err)
        if card_call and reason in EXPECTED_CARD_ERRORS:
            self.report.expected[reason] = self.report.expected.get(reason, 0) + 1
            # Like a real app, wait a little for the card to come back instead of
            # spinning: a hot loop of failing calls also starves pcscd's presence polling.
            self.stop.wait(CARD_BACKOFF)
        elif len(self.report.unexpected) < 20:
            self.report.unexpected.append(f"{err.code().name} {reason}: {err.details()}")

    def run(self) -> ClientReport:
        try:
            if self.report.kind in ("sign", "stream"):
                self.keys = harness.public_keys(self.channel)
            getattr(self, "run_" + self.report.kind)()
        except grpc.RpcError as err:
            self.failed(err, card_call=False)
        except Exception as exc:  # a crash in the client is a finding, not a hang
            self.report.unexpected.append(f"client crashed: {exc!r}")
        finally:
            self.channel.close()
        return self.report

    def check(self, signature: bytes, digest: bytes) -> None:
        if harness.verify(self.keys[self.label], self.label, signature, digest):
            self.report.ok += 1
        else:
            self.report.bad_signatures += 1

    def run_sign(self) -> None:
        algorithm = harness.ECDSA if self.label == harness.EC_KEY else harness.RSA
        n = 0
        while not self.stop.is_set():
            digest = harness.digest_for(self.report.index, n)
            n += 1
            request = hsm_pb2.HsmServiceSignRequest(
                key=harness.key_ref(self.label), algorithm=algorithm, digest=digest
            )
            try:
                self.check(self.hsm.Sign(request, timeout=30).signature, digest)
            except grpc.RpcError as err:
                self.failed(err, card_call=False)

    def run_stream(self) -> None:
        algorithm = harness.ECDSA if self.label == harness.EC_KEY else harness.RSA
        window = threading.Semaphore(STREAM_WINDOW)
        digests: dict[int, bytes] = {}
        key = harness.key_ref(self.label)

        def requests() -> Any:
            i = 0
            while not self.stop.is_set():
                window.acquire()
                digests[i] = harness.digest_for("stream", self.report.index, i)
                yield hsm_pb2.SignStreamRequest(
                    request_id=i, key=key, algorithm=algorithm, digest=digests[i]
                )
                i += 1

        responses = self.hsm.SignStream(requests())
        for response in responses:
            window.release()
            digest = digests.pop(response.request_id)
            if response.HasField("error"):
                reason = from_status_message(response.error).reason
                self.report.unexpected.append(f"stream item: {reason}")
            else:
                self.check(response.signature, digest)
            if self.stop.is_set():
                break
        window.release()
        responses.cancel()

    def run_transmit(self) -> None:
        batch = card_pb2.TransmitRequest(
            reader=self.reader, apdus=[harness.SELECT_PIV, harness.GET_CHUID] * 4,
            auto_response=True,
        )  # fmt: skip
        while not self.stop.is_set():
            try:
                reply = self.card.Transmit(batch, timeout=30)
                if len(reply.responses) == 8 and reply.responses[0].status_word == 0x9000:
                    self.report.ok += 1
                else:
                    self.report.unexpected.append(f"bad answer {reply}"[:200])
            except grpc.RpcError as err:
                self.failed(err, card_call=True)

    def run_session(self) -> None:
        apdus = card_pb2.TransmitRequest(apdus=[harness.SELECT_PIV, harness.GET_CHUID])
        while not self.stop.is_set():
            try:
                opened = self.card.OpenSession(
                    card_pb2.OpenSessionRequest(reader=self.reader), timeout=30
                )
            except grpc.RpcError as err:
                self.failed(err, card_call=True)
                continue
            try:
                apdus.session_id = opened.session_id
                self.card.Transmit(apdus, timeout=30)
                self.report.ok += 1
            except grpc.RpcError as err:
                self.failed(err, card_call=True)
            finally:
                try:
                    self.card.CloseSession(
                        card_pb2.CloseSessionRequest(session_id=opened.session_id), timeout=30
                    )
                except grpc.RpcError as err:
                    self.failed(err, card_call=True)

    def run_watch(self) -> None:
        """Unfiltered subscriber: record every live sequence number until the run's last."""
        call = self.card.WatchEvents(card_pb2.WatchEventsRequest())
        cancel = threading.Thread(target=self._cancel_when_done, args=(call,), daemon=True)
        cancel.start()
        try:
            for event in call:
                if event.snapshot:
                    continue
                self.report.sequences.append(event.sequence)
                self.report.ok += 1
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.failed(err, card_call=False)

    def _cancel_when_done(self, call: Any) -> None:
        """End the stream once the run stopped and this subscriber reached its last event."""
        self.stop.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            final = self.final.value
            if final and self.report.sequences and self.report.sequences[-1] >= final:
                break
            time.sleep(0.05)  # polling a shared counter written by another process
        call.cancel()


def load_process(assignments: list[tuple[str, int]], target: str, stop: Any, final: Any,
                 ready: Any, out: Any) -> None:  # fmt: skip
    """One load process: a thread per client; the reports go back through *out*."""
    clients = [Client(kind, index, target, stop, final) for kind, index in assignments]
    reports: list[ClientReport] = []
    threads = [threading.Thread(target=lambda c=c: reports.append(c.run())) for c in clients]
    for thread in threads:
        thread.start()
    ready.release()
    for thread in threads:
        thread.join()
    out.put([asdict(r) for r in reports])


# --- the parent: churn, sampling, verdict -------------------------------------------------


@dataclass
class Churn:
    """Pulls and re-inserts the cards in turn until stopped; counts what it did."""

    paths: TestbedPaths
    stop: threading.Event
    cycles: int = 0
    errors: list[str] = field(default_factory=list)

    def yank(self, slot: int) -> None:
        """Pull the card: SIGKILL its process. (The virtual card looks at SIGTERM only
        between APDUs, so under this load a polite removal can take many seconds.)"""
        card = slots.occupant(self.paths, slot)
        if card is not None:
            os.kill(card.pid, signal.SIGKILL)
            try:
                os.waitpid(card.pid, 0)  # our child (the test bed spawned it here): reap it
            except ChildProcessError:
                harness.wait_until(lambda: slots.occupant(self.paths, slot) is None, 10, "exit")
        slots.remove(self.paths, slot)  # forgets the dead process
        pcscd.wait_for_reader_state(vpcd_reader(slot), False, time.monotonic() + 10)

    def run(self) -> None:
        slot = 0
        while not self.stop.wait(CHURN_PERIOD / 2):
            try:
                self.yank(slot)
                self.stop.wait(CHURN_PERIOD / 2)
                slots.insert(self.paths, slot, "alice" if slot == 0 else "bob")
                self.cycles += 1
            except Exception as exc:  # reported in the verdict, the soak goes on
                self.errors.append(repr(exc))
            slot ^= 1


def sample_rss(gateway: harness.Gateway, stop: threading.Event, out: list[tuple[float, float]]
               ) -> None:  # fmt: skip
    t0 = time.monotonic()
    while not stop.wait(0.5):
        out.append((time.monotonic() - t0, gateway.rss_mb()))


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS (MB) over time, per minute."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return cov / var * 60 if var else 0.0


def last_sequence(gateway: harness.Gateway) -> int:
    """The sequence of the last live event, from a fresh subscription's snapshot."""
    with gateway.channel() as channel:
        call = card_pb2_grpc.CardServiceStub(channel).WatchEvents(card_pb2.WatchEventsRequest())
        for event in call:
            if event.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE:
                call.cancel()
                return int(event.sequence)
    raise AssertionError("no snapshot")


def warm_up(gateway: harness.Gateway) -> None:
    """A few calls of every kind, so lazily created pools exist before the baseline."""
    with gateway.channel() as channel:
        for label in (harness.EC_KEY, harness.RSA_KEY):
            harness.sign_once(channel, label)
        for reader in harness.READERS:
            harness.transmit_once(channel, reader)


def judge(reports: list[dict[str, Any]], final: int, first: int) -> dict[str, Any]:
    unexpected = [f"{r['kind']}#{r['index']}: {u}" for r in reports for u in r["unexpected"]]
    bad = sum(r["bad_signatures"] for r in reports)
    gaps = []
    for r in reports:
        if r["kind"] != "watch":
            continue
        seq = r["sequences"]
        contiguous = all(b == a + 1 for a, b in itertools.pairwise(seq))
        complete = bool(seq) and seq[0] <= first + 1 and seq[-1] >= final
        if not (contiguous and complete):
            gaps.append(f"watch#{r['index']}: {len(seq)} events {seq[:3]}..{seq[-3:]}")
    expected: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    for r in reports:
        expected.update(r["expected"])
        ops[r["kind"]] += r["ok"]
    return {"unexpected_errors": unexpected, "bad_signatures": bad, "subscriber_gaps": gaps,
            "expected_errors": dict(expected), "ok_by_kind": dict(ops)}  # fmt: skip


def run_soak(seconds: float, clients: int = 50, processes: int = 5,
             paths: TestbedPaths | None = None, root: Path | None = None
             ) -> dict[str, Any]:  # fmt: skip
    """The whole soak; returns the result dict (``passed`` and the evidence).

    *paths*: a test bed that is already up (the pytest fixture's), else one is made.
    """
    work = Path(tempfile.mkdtemp(prefix="hwgate-soak-")) if root is None else root
    paths = paths or harness.testbed_up(work / "testbed")
    config = harness.write_config(paths, work, pcsc="max_session_ttl = 5\nsubscriber_queue = 256")
    slots.insert(paths, 0, "alice")
    slots.insert(paths, 1, "bob")
    gateway = harness.start_gateway(config, work)
    result: dict[str, Any] = {"passed": False}
    try:
        result = _drive(gateway, paths, seconds, clients, processes)
        return result
    finally:
        gateway.stop()
        for slot in (0, 1):
            slots.remove(paths, slot)
        if root is None and result["passed"]:
            shutil.rmtree(work, ignore_errors=True)
        else:
            result["work_dir"] = str(work)  # the logs, for whoever reads a failure


def _drive(gateway: harness.Gateway, paths: TestbedPaths, seconds: float, clients: int,
           processes: int) -> dict[str, Any]:  # fmt: skip
    warm_up(gateway)
    baseline_threads = gateway.threads()
    first = last_sequence(gateway)
    ctx = multiprocessing.get_context("spawn")
    stop, final, ready, out = ctx.Event(), ctx.Value("q", 0), ctx.Semaphore(0), ctx.Queue()
    plan = [(KINDS[i % len(KINDS)], i) for i in range(clients)]
    procs = [
        ctx.Process(target=load_process,
                    args=(plan[p::processes], gateway.target, stop, final, ready, out))
        for p in range(processes)
    ]  # fmt: skip
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("load processes did not start")
    parent_stop = threading.Event()
    rss: list[tuple[float, float]] = []
    churn = Churn(paths, parent_stop)
    helpers = [threading.Thread(target=churn.run),
               threading.Thread(target=sample_rss, args=(gateway, parent_stop, rss))]  # fmt: skip
    for thread in helpers:
        thread.start()
    parent_stop.wait(seconds)  # the soak's duration
    parent_stop.set()
    for thread in helpers:
        thread.join()
    final.value = last_sequence(gateway)
    stop.set()
    reports = [r for _ in procs for r in out.get(timeout=120)]
    for proc in procs:
        proc.join(30)
    verdict = judge(reports, final.value, first)
    held = _settle(lambda: not _held(gateway), 15)
    threads_end = _settle(lambda: gateway.threads() <= baseline_threads, 15)
    half = [s for s in rss if s[0] >= seconds / 2]
    slope = slope_per_minute(half)
    growth = slope * (seconds / 2) / 60
    result = {
        "seconds": seconds, "clients": clients, "processes": processes,
        "card_cycles": churn.cycles, "churn_errors": churn.errors,
        "events": final.value - first,
        **verdict,
        "rss_mb": {"start": rss[0][1] if rss else None, "end": rss[-1][1] if rss else None,
                   "max": max((r for _, r in rss), default=None),
                   "slope_mb_per_min_second_half": round(slope, 3),
                   "fitted_growth_mb_second_half": round(growth, 3)},
        "threads": {"baseline": baseline_threads, "end": gateway.threads()},
        "sessions_held_at_end": _held(gateway),
    }  # fmt: skip
    checks = {
        "no unexpected errors": not verdict["unexpected_errors"] and not churn.errors,
        "every signature verifies": verdict["bad_signatures"] == 0,
        "subscribers gap-free and complete": not verdict["subscriber_gaps"],
        "RSS flat": growth <= RSS_GROWTH_LIMIT,
        "threads back to baseline": threads_end,
        "no session held": held,
        "cards churned": churn.cycles >= 1,
        "every kind made progress": all(verdict["ok_by_kind"].get(k, 0) > 0 for k in KINDS),
    }
    result["checks"] = checks
    result["passed"] = all(checks.values())
    return result


def _held(gateway: harness.Gateway) -> list[str]:
    with gateway.channel() as channel:
        return harness.sessions_held(channel)


def _settle(predicate: Callable[[], bool], timeout: float) -> bool:
    """Whether *predicate* becomes true within *timeout* (leaks are judged after this)."""
    try:
        harness.wait_until(predicate, timeout, "the daemon to settle")
    except AssertionError:
        return False
    return True


def print_result(result: dict[str, Any]) -> None:
    print(
        f"\nsoak: {result['clients']} clients for {result['seconds']:.0f}s, "
        f"{result['card_cycles']} card pull/insert cycles, {result['events']} events"
    )
    print("  completed:", ", ".join(f"{k} {v}" for k, v in result["ok_by_kind"].items()))
    print("  expected errors:", result["expected_errors"] or "none")
    rss = result["rss_mb"]
    print(f"  RSS start {rss['start']:.1f} MB, end {rss['end']:.1f} MB, max {rss['max']:.1f} MB, "
          f"second half: slope {rss['slope_mb_per_min_second_half']:+.2f} MB/min, fitted growth "
          f"{rss['fitted_growth_mb_second_half']:+.2f} MB")  # fmt: skip
    print(f"  threads baseline {result['threads']['baseline']}, end {result['threads']['end']}")
    for name, ok in result["checks"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    lines = result["unexpected_errors"] + result["subscriber_gaps"] + result["churn_errors"]
    for line in lines[:20]:
        print("   ", line)
