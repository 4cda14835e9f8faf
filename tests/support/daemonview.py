"""A running hwgated as a test-bed observer: card changes count as done once the
daemon itself reports them.

pcscd seeing a card is not the daemon seeing it: the daemon's monitor thread
picks the change up and then reads the card's identity, and on a loaded machine
that can take seconds. A test that calls OpenSession right after inserting a card
must therefore wait for the daemon's own view, here its WatchEvents stream (the
snapshot, then live events), with a deadline. Fixtures register a daemon for its
lifetime with :func:`watch`; the test bed's ``cards`` fixture and bed guard then
wait on it (see hwgate_testbed.pytest_plugin).
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed import bedstate
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.pytest_plugin import BedObserver, observers
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


@dataclass
class DaemonView:
    """One daemon's view of the readers, through its CardService."""

    name: str
    target: str  # a Unix socket target whose role may watch every reader
    alive: Callable[[], bool]
    readers: Sequence[str] = ("*",)  # the daemon's [pcsc] readers patterns

    def _channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)

    def watches(self, reader: str) -> bool:
        return any(fnmatch.fnmatchcase(reader, pattern) for pattern in self.readers)

    def wait_reader(self, reader: str, present: bool, deadline: float) -> None:
        """Until the daemon reports *reader* identified (PRESENT/MUTE) or empty."""
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
                if not self.alive():
                    return  # stopped meanwhile (a test may stop its daemon)
                shown = card_pb2.ReaderState.Name(state) if state is not None else "no reader"
                raise AssertionError(
                    f"{self.name} did not report {want} in {reader} in time "
                    f"(last seen: {shown}; {err.code().name})"
                ) from None
            finally:
                call.cancel()
        if self.alive():
            raise AssertionError(f"{self.name}: WatchEvents ended before {reader} had {want}")

    def sessions_held(self) -> list[str]:
        if not self.alive():
            return []
        with self._channel() as channel:
            stub = card_pb2_grpc.CardServiceStub(channel)
            try:
                reply = stub.ListReaders(card_pb2.ListReadersRequest(), timeout=scaled(10))
            except grpc.RpcError:
                if not self.alive():
                    return []
                raise
        return [r.name for r in reply.readers if r.session_held]


@contextlib.contextmanager
def watch(
    name: str,
    target: str,
    alive: Callable[[], bool],
    readers: Sequence[str] = ("*",),
    *,
    settle: bool = True,
) -> Iterator[DaemonView]:
    """Register a daemon for as long as the block runs. With *settle*, first wait
    until it reports every vpcd reader as pcscd does (a card inserted before the
    daemon started is identified before the test goes on)."""
    view = DaemonView(name, target, alive, readers)
    if settle:
        settle_view(view)
    observer: BedObserver = view
    with observers.watching(observer):
        yield view


def settle_view(view: DaemonView, timeout: float = 15.0) -> None:
    """Wait until *view* agrees with pcscd about every vpcd reader it watches."""
    deadline = time.monotonic() + scaled(timeout)
    for slot in bedstate.snapshot().slots.values():
        view.wait_reader(vpcd_reader(slot.slot), slot.present, deadline)


def process_alive(proc: object) -> Callable[[], bool]:
    """alive() for a subprocess.Popen."""
    return lambda: proc.poll() is None  # type: ignore[attr-defined,no-any-return]
