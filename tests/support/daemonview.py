"""A running hwgated as a test-bed observer: card changes count as done once the
daemon itself reports them.

pcscd seeing a card is not the daemon seeing it: the daemon's monitor thread
picks the change up and then reads the card's identity, and on a loaded machine
that can take seconds. A test that calls OpenSession right after inserting a card
must therefore wait for the daemon's own view, here its WatchEvents stream (the
snapshot, then live events), with a deadline. Every daemon started through
support.daemon.start_daemon is registered (:func:`register`), others with
:func:`watch`; the test bed's ``cards`` fixture and bed guard then wait on them
(see hwgate_testbed.pytest_plugin).
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed import bedstate
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.pytest_plugin import observers
from hwgate_testbed.timing import scaled

# A private connection per call: a shared daemon may cap streams per connection.
_CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
_PRESENT = {card_pb2.READER_STATE_PRESENT, card_pb2.READER_STATE_MUTE}
_STATE_EVENTS = {
    card_pb2.EVENT_TYPE_READER_STATE,
    card_pb2.EVENT_TYPE_READER_ADDED,
    card_pb2.EVENT_TYPE_CARD_INSERTED,
    card_pb2.EVENT_TYPE_CARD_REMOVED,
}
# The socket's role may not watch readers: that daemon cannot be observed.
_BLIND = {
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNIMPLEMENTED,
}
SETTLE_TIMEOUT = 15.0  # seconds (scaled) for a new daemon to agree with pcscd


@dataclass
class DaemonView:
    """One daemon's view of the readers, through its CardService."""

    name: str
    target: str  # a Unix socket target
    alive: Callable[[], bool]
    readers: Sequence[str] = ("*",)  # the daemon's [pcsc] readers patterns
    blind: bool = False

    def _channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)

    def watches(self, reader: str) -> bool:
        return not self.blind and any(fnmatch.fnmatchcase(reader, p) for p in self.readers)

    def wait_reader(self, reader: str, present: bool, deadline: float) -> None:
        """Until the daemon reports *reader* identified (PRESENT/MUTE) or empty.

        A daemon that is stopping (UNAVAILABLE) or whose role may not watch is
        not waited on: only "serving but not there in time" is a failure."""
        if not self.watches(reader) or not self.alive():
            return
        want = "a card" if present else "no card"
        state: int | None = None
        with self._channel() as channel:
            stub = card_pb2_grpc.CardServiceStub(channel)
            request = card_pb2.WatchEventsRequest(reader_patterns=[reader])
            call = stub.WatchEvents(request, timeout=max(0.1, deadline - time.monotonic()))
            try:
                complete = False
                for event in call:
                    if event.type in _STATE_EVENTS and event.reader == reader:
                        state = event.state
                    elif event.type == card_pb2.EVENT_TYPE_SERVICE_DOWN or (
                        event.type == card_pb2.EVENT_TYPE_READER_REMOVED and event.reader == reader
                    ):
                        state = None
                    complete = complete or event.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE
                    if complete and (state in _PRESENT) == present:
                        return
            except grpc.RpcError as err:
                if err.code() in _BLIND:
                    self.blind = True
                    return
                if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED or not self.alive():
                    return  # stopping or stopped: a test may stop its daemon
                shown = card_pb2.ReaderState.Name(state) if state is not None else "no reader"
                raise AssertionError(
                    f"hwgated {self.name} did not report {want} in {reader} in time "
                    f"(its last word: {shown})"
                ) from None
            finally:
                call.cancel()

    def sessions_held(self) -> list[str]:
        if self.blind or not self.alive():
            return []
        with self._channel() as channel:
            stub = card_pb2_grpc.CardServiceStub(channel)
            try:
                reply = stub.ListReaders(card_pb2.ListReadersRequest(), timeout=scaled(10))
            except grpc.RpcError:
                return []  # stopping, or a role that may not list: nothing to restore
        return [r.name for r in reply.readers if r.session_held]

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until the daemon agrees with pcscd about every vpcd reader it watches
        (a card inserted before it started is identified before a test goes on)."""
        deadline = time.monotonic() + scaled(timeout)
        for slot in bedstate.snapshot().slots.values():
            self.wait_reader(vpcd_reader(slot.slot), slot.present, deadline)


def reader_patterns(config: Path) -> tuple[str, ...]:
    """The [pcsc] readers patterns of a daemon config (every reader by default)."""
    try:
        doc = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ("*",)
    return tuple(doc.get("pcsc", {}).get("readers", ("*",)))


def register(view: DaemonView, *, settle: bool = True) -> DaemonView:
    """Observe *view* until its daemon stops (a stopped daemon is dropped)."""
    if settle:
        view.settle()
    observers.add(view)
    return view


@contextlib.contextmanager
def watch(
    name: str,
    target: str,
    alive: Callable[[], bool],
    readers: Sequence[str] = ("*",),
    *,
    settle: bool = True,
) -> Iterator[DaemonView]:
    """Observe a daemon for as long as the block runs."""
    view = register(DaemonView(name, target, alive, readers), settle=settle)
    try:
        yield view
    finally:
        observers.discard(view)


def process_alive(proc: object) -> Callable[[], bool]:
    """alive() for a subprocess.Popen."""
    return lambda: proc.poll() is None  # type: ignore[attr-defined,no-any-return]
