"""Fault drill: one hwgated under a light load, hit by one fault at a time.

The load (a signer verifying every signature, a transmitter on reader 1, an
unfiltered subscriber) runs through the whole drill. After each fault the daemon
must serve again without a restart, have reported the right errors, and have lost
nothing it acknowledged: every signature verifies, the subscriber's sequence
numbers stay gap-free. Each fault's recovery time (fault to first successful
call / SERVING) is printed (pytest -s) and written to bench/results/drill.json.

The tests share the daemon and may run in any order: the SIGTERM test stops it,
and the next test to ask for the drill gets a fresh daemon and load.
Run alone: ``testbed/isolated .venv/bin/python -m pytest tests/drill -s``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from hwgate.errors import from_status_message
from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed import pcscd, slots
from hwgate_testbed.paths import TestbedPaths
from hwgate_testbed.timing import scaled
from support import harness

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

R0, R1 = harness.READERS
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "drill.json"
BIG_BATCH = 60000  # several seconds of APDUs: the pull lands mid-batch
PIN_STATUS = bytes.fromhex("00200080")  # empty VERIFY: changes nothing
SESSION_TTL = 2.0
RECOVERIES: dict[str, dict[str, float | str]] = {}


@dataclass
class Load:
    """The light background load; records everything the daemon acknowledged."""

    gateway: harness.Gateway
    stop: threading.Event = field(default_factory=threading.Event)
    signatures: list[tuple[bytes, bytes]] = field(default_factory=list)
    sign_errors: list[str] = field(default_factory=list)
    transmit_errors: list[str] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    event_types: list[int] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Start the load; return once the event watcher's snapshot is complete, so a
        fault a test makes next is seen (a watcher still subscribing after the daemon
        was restarted missed the SERVICE_DOWN of a pcscd killed right then)."""
        for fn in (self._sign, self._transmit, self._watch):
            thread = threading.Thread(target=fn, daemon=True)
            thread.start()
            self.threads.append(thread)
        harness.wait_until(self.subscribed.is_set, 30, "the event watcher's snapshot")

    def _sign(self) -> None:
        channel = self.gateway.channel()
        stub = hsm_pb2_grpc.HsmServiceStub(channel)
        n = 0
        while not self.stop.wait(0.01):  # a light load: ~100 signatures/s at most
            digest = harness.digest_for("load", n)
            n += 1
            request = hsm_pb2.HsmServiceSignRequest(
                key=harness.key_ref(harness.EC_KEY), algorithm=harness.ECDSA, digest=digest
            )
            try:
                self.signatures.append((digest, stub.Sign(request, timeout=10).signature))
            except grpc.RpcError as err:
                self.sign_errors.append(harness.error_reason(err) or err.code().name)

    def _transmit(self) -> None:
        channel = self.gateway.channel()
        while not self.stop.wait(0.02):
            if self.paused.is_set():
                continue
            try:
                harness.transmit_once(channel, R1, timeout=10)
            except grpc.RpcError as err:
                self.transmit_errors.append(harness.error_reason(err) or err.code().name)

    def _watch(self) -> None:
        """Resumes after the last sequence when its stream ends (e.g. at SIGTERM)."""
        channel = self.gateway.channel()
        stub = card_pb2_grpc.CardServiceStub(channel)
        call = stub.WatchEvents(card_pb2.WatchEventsRequest())
        self._call = call
        try:
            for event in call:
                if event.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE:
                    self.subscribed.set()
                if not event.snapshot:
                    self.sequences.append(event.sequence)
                    self.event_types.append(event.type)
        except grpc.RpcError:
            pass

    def wait_events(self, count: int, timeout: float = 20) -> None:
        harness.wait_until(lambda: len(self.sequences) >= count, timeout, f"{count} events")

    def gap_free(self) -> bool:
        seq = self.sequences
        return all(b == a + 1 for a, b in itertools.pairwise(seq))

    def all_signatures_verify(self, public: Any) -> bool:
        return all(harness.verify(public, harness.EC_KEY, s, d) for d, s in self.signatures)


@dataclass
class Drill:
    paths: TestbedPaths
    gateway: harness.Gateway
    load: Load
    public: Any
    work: Path
    config: Path

    def restart_if_stopped(self) -> None:
        """A test that stopped the daemon (SIGTERM) leaves it to the next one to start."""
        if self.gateway.proc.poll() is None:
            return
        self.load.stop.set()
        self.gateway = harness.start_gateway(self.config, self.work)
        self.load = Load(self.gateway)
        self.load.start()


def record(fault: str, **values: float | str) -> None:
    RECOVERIES[fault] = values
    shown = ", ".join(
        f"{k} {v * 1000:.0f} ms" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )
    print(f"\n[drill] {fault}: {shown}")


def first_success(call: Any, timeout: float = 30) -> float:
    """Retry *call* until it succeeds; the monotonic time it did."""

    def attempt() -> float | None:
        try:
            call()
        except grpc.RpcError:
            return None
        return time.monotonic()

    result: float = harness.wait_until(attempt, timeout, "a successful call")
    return result


@pytest.fixture(scope="module")
def drill_module(testbed: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    work = tmp_path_factory.mktemp("drill")
    paths: TestbedPaths = testbed.paths
    config = harness.write_config(
        paths, work,
        pcsc=f"max_session_ttl = {SESSION_TTL}\nsubscriber_queue = 8\n"
             f"max_apdus_per_transmit = {BIG_BATCH}",
        grace=2.0,
    )  # fmt: skip
    slots.insert(paths, 0, "alice")
    slots.insert(paths, 1, "bob")
    gateway = harness.start_gateway(config, work)
    with gateway.channel() as channel:
        public = harness.public_keys(channel)[harness.EC_KEY]
    load = Load(gateway)
    load.start()
    drill = Drill(paths, gateway, load, public, work, config)
    try:
        yield drill
    finally:
        drill.load.stop.set()
        drill.gateway.stop(signal.SIGKILL)
        for slot in (0, 1):
            slots.remove(paths, slot)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(RECOVERIES, indent=2))
        print(f"\n[drill] recoveries written to {RESULTS}")


@pytest.fixture
def drill(drill_module: Drill) -> Drill:
    drill_module.restart_if_stopped()
    return drill_module


def assert_nothing_lost(drill: Drill) -> None:
    assert drill.load.all_signatures_verify(drill.public)
    assert drill.load.gap_free(), drill.load.sequences
    with drill.gateway.channel() as channel:
        assert harness.sign_once(channel)
        assert harness.transmit_once(channel, R1) == 0x9000


def test_pcscd_killed_and_restarted(drill: Drill) -> None:
    status = pcscd.status(drill.paths)
    if not status.started_here or status.pid is None:
        pytest.skip("pcscd is not the test bed's own (run under testbed/isolated)")
    events_before = len(drill.load.sequences)
    t0 = time.monotonic()
    os.kill(status.pid, signal.SIGKILL)
    try:
        os.waitpid(status.pid, 0)  # ours: reap it, or its pid file blocks the next pcscd
    except ChildProcessError:
        harness.wait_until(lambda: not Path(f"/proc/{status.pid}").exists(), 10, "pcscd gone")
    drill.paths.pcscd_pid.unlink(missing_ok=True)
    # vpcd's cards die with pcscd (their connection closes): forget them, then re-plug.
    harness.wait_until(lambda: not drill.gateway.serving(("hwgate.v1.CardService",)), 10,
                       "CardService NOT_SERVING")  # fmt: skip
    for slot in (0, 1):
        slots.remove(drill.paths, slot)
    pcscd.ensure_running(drill.paths, time.monotonic() + 20)
    t_pcscd = time.monotonic()
    serving = drill.gateway.wait_serving(("hwgate.v1.CardService",), timeout=30)
    slots.insert(drill.paths, 0, "alice")
    slots.insert(drill.paths, 1, "bob")
    with drill.gateway.channel() as channel:
        done = first_success(lambda: harness.transmit_once(channel, R1, timeout=5))
    drill.load.wait_events(events_before + 1)
    types = drill.load.event_types[events_before:]
    assert card_pb2.EVENT_TYPE_SERVICE_DOWN in types
    harness.wait_until(
        lambda: card_pb2.EVENT_TYPE_SERVICE_UP in drill.load.event_types[events_before:], 10,
        "SERVICE_UP event",
    )  # fmt: skip
    assert drill.gateway.proc.poll() is None, "the daemon was not restarted"
    record(
        "pcscd kill -9 + restart",
        pcscd_restart=t_pcscd - t0,
        serving_after_pcscd=serving - t_pcscd,
        first_transmit_after_kill=done - t0,
    )
    assert_nothing_lost(drill)


def test_hsm_worker_segv(drill: Drill) -> None:
    pid = drill.gateway.pid

    def pair(exclude: set[int]) -> set[int] | None:
        workers = harness.hsm_worker_pids(pid)
        return workers if len(workers) == 2 and workers != exclude else None

    before: set[int] = harness.wait_until(lambda: pair(set()), 20, "two HSM workers")
    # Eight unary signers run through the crash too, each on its own channel.
    unary_stop = threading.Event()
    unary_ok: list[tuple[bytes, bytes]] = []
    unary_errors: list[str] = []

    def unary_signer(n: int) -> None:
        with drill.gateway.channel() as channel:
            stub = hsm_pb2_grpc.HsmServiceStub(channel)
            for i in itertools.count():
                if unary_stop.is_set():
                    return
                digest = harness.digest_for("segv-unary", n, i)
                request = hsm_pb2.HsmServiceSignRequest(
                    key=harness.key_ref(harness.EC_KEY), algorithm=harness.ECDSA, digest=digest
                )
                try:
                    unary_ok.append((digest, stub.Sign(request, timeout=30).signature))
                except grpc.RpcError as err:
                    unary_errors.append(harness.error_reason(err) or err.code().name)

    signers = [threading.Thread(target=unary_signer, args=(n,), daemon=True) for n in range(8)]
    for thread in signers:
        thread.start()
    # In flight: a SignStream keeps many RSA signatures outstanding on both workers.
    with drill.gateway.channel() as channel:
        stub = hsm_pb2_grpc.HsmServiceStub(channel)
        # Work stays queued on both workers until the kill: the request stream is fed
        # until then (gRPC flow control paces it), and 500 more after. A fixed list ran
        # dry on a loaded machine before the unary signers had their 50, so nothing was
        # in flight on the victim. Batches of 64 are spread over the workers, up to 4
        # per worker in its pipe.
        killed = threading.Event()
        digests: list[bytes] = []

        def feed() -> Iterator[hsm_pb2.SignStreamRequest]:
            stop_at: int | None = None
            for i in itertools.count():
                if stop_at is None and killed.is_set():
                    stop_at = i + 500
                if stop_at is not None and i >= stop_at:
                    return
                digests.append(harness.digest_for("segv", i))
                yield hsm_pb2.SignStreamRequest(
                    request_id=i, key=harness.key_ref(harness.RSA_KEY),
                    algorithm=harness.RSA, digest=digests[i],
                )  # fmt: skip

        responses = stub.SignStream(feed())
        first = next(responses)
        harness.wait_until(lambda: len(unary_ok) >= 50, 20, "the unary signers to sign")
        t0 = time.monotonic()
        # One worker, as in the field: both hold stream work at this instant. (Both at
        # once is a different failure: a request running on the first and then on the
        # second has seen two workers die under it, which is what the pool takes for a
        # poison request, and it fails with HSM_WORKER_LOST.)
        victim = min(before)
        # Work is in flight on it when it dies, not by luck of timing: stopped, it picks
        # nothing up, so the pool's next requests for it wait unread in its socket (a CI
        # run on a busy machine once caught it idle). The SIGSEGV lands when it runs
        # again. (Stopped for well under op_timeout, or the pool would kill it as hung.)
        os.kill(victim, signal.SIGSTOP)
        try:
            harness.wait_until(lambda: harness.unread_bytes(victim) > 0, 5,
                               "requests queued on the stopped worker")  # fmt: skip
            os.kill(victim, signal.SIGSEGV)
        finally:
            os.kill(victim, signal.SIGCONT)
        killed.set()
        rest = [first, *responses]
        public = harness.public_keys(channel)
    signed_at_kill = len(unary_ok)
    harness.wait_until(lambda: len(unary_ok) >= signed_at_kill + 50, 30, "unary signing after")
    unary_stop.set()
    for thread in signers:
        thread.join(30)
    failed = [r for r in rest if r.HasField("error")]

    # Zero lost: every in-flight request was resent to a replacement worker, so no
    # caller saw the crash: not one stream item, not one unary call.
    assert [from_status_message(r.error).reason for r in failed] == []
    assert unary_errors == []
    assert len(rest) == len(digests)
    assert sorted(r.request_id for r in rest) == list(range(len(digests)))
    for r in rest:
        assert harness.verify(public[harness.RSA_KEY], harness.RSA_KEY, r.signature,
                              digests[r.request_id])  # fmt: skip
    for digest, signature in unary_ok:
        assert harness.verify(public[harness.EC_KEY], harness.EC_KEY, signature, digest)
    replaced = harness.wait_until(
        lambda: (w := pair(before)) and victim not in w and w, 30, "a replacement worker"
    )
    t_replaced = time.monotonic()
    serving = drill.gateway.wait_serving(("hwgate.v1.HsmService",))
    with drill.gateway.channel() as channel:
        done = first_success(lambda: harness.sign_once(channel, harness.RSA_KEY))
    assert victim not in replaced and len(replaced - before) == 1
    resent = drill.gateway.log.read_text().count("its worker died; sending it again")
    assert resent > 0, "nothing was in flight on the killed worker: the drill proved nothing"
    record("HSM worker SIGSEGV", lost_in_flight=str(len(failed) + len(unary_errors)),
           stream_items=str(len(rest)), unary_signed=str(len(unary_ok)),
           worker_replaced=t_replaced - t0, serving=serving - t0, first_sign=done - t0)  # fmt: skip
    assert drill.load.sign_errors == []
    assert_nothing_lost(drill)


def test_card_pulled_mid_batch(drill: Drill) -> None:
    batch = card_pb2.TransmitRequest(reader=R0, apdus=[PIN_STATUS] * BIG_BATCH)
    result: dict[str, Any] = {}

    def long_batch() -> None:
        with drill.gateway.channel() as channel:
            try:
                card_pb2_grpc.CardServiceStub(channel).Transmit(batch, timeout=60)
                result["reason"] = "completed"
            except grpc.RpcError as err:
                result["reason"] = harness.error_reason(err)
                result["code"] = err.code()

    thread = threading.Thread(target=long_batch)
    thread.start()
    t0 = time.monotonic()
    slots.remove(drill.paths, 0)
    thread.join(60)
    assert result.get("reason") == "CARD_REMOVED", result
    assert result["code"] == grpc.StatusCode.ABORTED
    slots.insert(drill.paths, 0, "alice")
    with drill.gateway.channel() as channel:
        done = first_success(lambda: harness.transmit_once(channel, R0, timeout=5))
    record("card pulled mid-batch", first_transmit_after_reinsert_from_pull=done - t0)
    assert_nothing_lost(drill)


CLIENT = """
import sys, grpc
from hwgate.v1 import card_pb2, card_pb2_grpc
channel = grpc.insecure_channel(sys.argv[1])
stub = card_pb2_grpc.CardServiceStub(channel)
session = stub.OpenSession(card_pb2.OpenSessionRequest(reader=sys.argv[2]))
events = stub.WatchEvents(card_pb2.WatchEventsRequest())
for event in events:
    if event.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE:
        print("ready", flush=True)
sys.stdin.read()
"""


def test_client_killed_mid_stream(drill: Drill) -> None:
    streams_before = drill.gateway.metric("hwgate_rpc_streams_active")
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, drill.gateway.target, R0],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert client.stdout is not None
    assert client.stdout.readline().strip() == b"ready"
    with drill.gateway.channel() as channel:
        assert R0 in harness.sessions_held(channel)
        assert (drill.gateway.metric("hwgate_rpc_streams_active") or 0) > (streams_before or 0)
        t0 = time.monotonic()
        client.kill()
        client.wait(10)
        released = harness.wait_until(
            lambda: R0 not in harness.sessions_held(channel) and time.monotonic(), 3 * SESSION_TTL
            + 10, "the dead client's session to expire",
        )  # fmt: skip
        streams = harness.wait_until(
            lambda: drill.gateway.metric("hwgate_rpc_streams_active") == streams_before
            and time.monotonic(), scaled(20), "the dead client's stream to go",
        )  # fmt: skip
        done = first_success(lambda: harness.transmit_once(channel, R0, timeout=5))
    record("client SIGKILL mid-stream", stream_released=streams - t0,
           session_expired=released - t0, reader_usable=done - t0)  # fmt: skip
    assert_nothing_lost(drill)


def test_stalled_subscriber_is_cut_off(drill: Drill) -> None:
    slow_channel = grpc.insecure_channel(
        drill.gateway.target,
        options=[("grpc.http2.lookahead_bytes", 256), ("grpc.http2.bdp_probe", 0)],
    )
    slow = card_pb2_grpc.CardServiceStub(slow_channel).WatchEvents(card_pb2.WatchEventsRequest())
    events_before = len(drill.load.sequences)
    t0 = time.monotonic()
    cycles = 0
    for _ in range(12):
        slots.remove(drill.paths, 0)
        slots.insert(drill.paths, 0, "alice")
        cycles += 1
    drill.load.wait_events(events_before + 2 * cycles)  # the fast subscriber got them all
    received = []
    with pytest.raises(grpc.RpcError) as err:
        for event in slow:
            received.append(event)
    t_cut = time.monotonic()
    assert harness.error_reason(err.value) == "SUBSCRIBER_TOO_SLOW"
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    slow_channel.close()
    record("stalled subscriber", cut_off_seen_by_client=t_cut - t0, events_driven=str(2 * cycles))
    assert_nothing_lost(drill)


DENY_HSM_POLICY = """[policy.roles.admin]
allow = ["hwgate.v1.CardService/*", "grpc.health.v1.Health/*"]
[[policy.keys]]
pattern = "*"
roles = ["admin"]
[[policy.readers]]
pattern = "*"
roles = ["admin"]
"""


def test_sighup_applies_a_new_policy(drill: Drill) -> None:
    pytest.importorskip("hwgated.ops.reload", reason="the SIGHUP reload has not landed")

    original = drill.gateway.config.read_text()
    drill.gateway.config.write_text(original.replace(harness.ALLOW_ALL_POLICY, DENY_HSM_POLICY))
    try:
        t0 = time.monotonic()
        drill.gateway.proc.send_signal(signal.SIGHUP)
        with drill.gateway.channel() as channel:

            def denied() -> float | None:
                try:
                    harness.sign_once(channel)
                except grpc.RpcError as err:
                    return (
                        time.monotonic() if harness.error_reason(err) == "POLICY_DENIED" else None
                    )
                return None

            applied = harness.wait_until(denied, 10, "the new policy to deny Sign")
            assert harness.transmit_once(channel, R1) == 0x9000  # still allowed
    finally:
        drill.gateway.config.write_text(original)
    t1 = time.monotonic()
    drill.gateway.proc.send_signal(signal.SIGHUP)
    with drill.gateway.channel() as channel:
        restored = first_success(lambda: harness.sign_once(channel), timeout=10)
    assert drill.gateway.proc.poll() is None
    record("SIGHUP new policy", applied=applied - t0, restored=restored - t1)
    drill.load.sign_errors = [e for e in drill.load.sign_errors if e != "POLICY_DENIED"]
    assert_nothing_lost(drill)


def test_sigterm_exits_cleanly_within_grace(drill: Drill) -> None:
    drill.load.stop.set()
    grace = 2.0
    t0 = time.monotonic()
    drill.gateway.proc.send_signal(signal.SIGTERM)
    code = drill.gateway.proc.wait(timeout=grace + 10)
    elapsed = time.monotonic() - t0
    record("SIGTERM", exit=elapsed)
    assert code == 0
    assert elapsed <= grace + 3.0, elapsed  # grace for RPCs + closing workers
    assert not drill.gateway.socket.exists()
    assert drill.load.all_signatures_verify(drill.public)
    assert drill.load.gap_free()
    # A call still running when the grace period ends is cancelled by the server.
    assert set(drill.load.sign_errors) <= {
        "HSM_WORKER_LOST",
        "SHUTTING_DOWN",
        "UNAVAILABLE",
        "CANCELLED",
    }, set(drill.load.sign_errors)
    # The card load ran through the whole drill: a card pulled, pcscd killed, and on a
    # loaded machine a virtual card too slow to answer in time (CARD_UNRESPONSIVE, seen
    # in a stress run) -- each a classified answer, none an INTERNAL or a hang.
    expected_card = {"PCSC_UNAVAILABLE", "CARD_NOT_PRESENT", "CARD_REMOVED", "READER_NOT_FOUND",
                     "CARD_UNRESPONSIVE", "SHUTTING_DOWN", "UNAVAILABLE", "CANCELLED"}  # fmt: skip
    assert set(drill.load.transmit_errors) <= expected_card, set(drill.load.transmit_errors)
