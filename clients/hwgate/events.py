"""A WatchEvents iterator that survives dropped streams and daemon restarts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc

from hwgate import errors
from hwgate.resume import ResumeState, resumable
from hwgate.v1 import card_pb2, card_pb2_grpc

Event = card_pb2.WatchEventsResponse


class EventStream:
    """Iterates over ``WatchEventsResponse`` messages, resuming transparently.

    When the stream breaks (daemon restart, connection loss, SUBSCRIBER_TOO_SLOW)
    it reopens it with ``after_sequence`` = the last event seen, waiting for the
    channel to come back (``wait_for_ready``). Missed events are replayed by the
    daemon; if it can no longer replay them (restart, journal overflow) a
    snapshot with ``resync=True`` arrives instead: treat its READER_STATE
    events as the current truth. See :mod:`hwgate.resume` for the exact rules.
    Errors that a resume cannot cure (PERMISSION_DENIED, ...) are raised as
    :class:`hwgate.HwgateError`. ``cancel()`` (or leaving the ``with`` block)
    ends the iteration from any thread.
    """

    def __init__(
        self,
        stub: card_pb2_grpc.CardServiceStub,
        state: ResumeState,
        metadata: list[tuple[str, str]] | None = None,
        resume: bool = True,
    ) -> None:
        self._stub = stub
        self.state = state
        self._metadata = metadata
        self._resume = resume
        self._cancelled = threading.Event()
        self._call: Any = None
        self._lock = threading.Lock()
        self.reconnects = 0

    @property
    def after_sequence(self) -> int:
        """The resume point: pass it to a later ``watch_events`` to continue from here."""
        return self.state.after_sequence

    def __iter__(self) -> Iterator[Event]:
        while not self._cancelled.is_set():
            try:
                for event in self._open():
                    if self.state.accept(event):
                        yield event
            except grpc.RpcError as err:
                if self._cancelled.is_set():
                    return
                exc = errors.from_rpc_error(err)
                if not (self._resume and resumable(exc)):
                    raise exc from err
            if not self._resume:
                return
            self.reconnects += 1
            self._cancelled.wait(self.state.next_backoff())

    def _open(self) -> Any:
        with self._lock:
            if self._cancelled.is_set():
                return iter(())
            self._call = self._stub.WatchEvents(
                self.state.request(), metadata=self._metadata, wait_for_ready=True
            )
            return self._call

    def cancel(self) -> None:
        """Stop the iteration (the current ``next()`` returns StopIteration)."""
        with self._lock:
            self._cancelled.set()
            if self._call is not None:
                self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cancel()
