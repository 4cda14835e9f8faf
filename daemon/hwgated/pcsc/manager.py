"""The card subsystem on the asyncio side: readers, jobs, sessions, events.

The monitor thread's observations arrive here through one queue and are handled
in order by one task, so every subscriber sees a reader's events in the order
pcscd reported them. Access to a reader is an asyncio FIFO lock: a one-shot job
holds it for one job, a session for its whole life; everyone else queues up to
their own deadline. Card I/O itself happens on the reader's worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from hwgated import errors
from hwgated.config import PcscConfig
from hwgated.pcsc import scard
from hwgated.pcsc.events import CardEvent, EventFilter, EventHub, EventType, ReaderState
from hwgated.pcsc.events import Subscription as Subscription
from hwgated.pcsc.identity import CardIdentity, read_identity
from hwgated.pcsc.monitor import ReaderMonitor
from hwgated.pcsc.worker import CardLink, ReaderWorker

log = logging.getLogger(__name__)

T = TypeVar("T")

IDENTITY_TIMEOUT = 5.0
IDENTITY_ATTEMPTS = 3
IDENTITY_RETRY_DELAY = 0.05  # seconds; pcscd needs a moment to power a fresh card
_insertions = itertools.count(1)


@dataclass
class Session:
    id: str
    reader: str
    owner: str
    insertion: int
    ttl: float
    expires_at: float = 0.0  # loop time
    timer: asyncio.TimerHandle | None = None
    closed: bool = False


@dataclass
class ReaderSlot:
    name: str
    worker: ReaderWorker
    state: ReaderState = ReaderState.EMPTY
    atr: bytes = b""
    identity: CardIdentity | None = None
    insertion: int = 0
    access: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: Session | None = None
    # Set while a newly seen card's identity is read: jobs wait for it, not fail.
    settling: asyncio.Event | None = None


class _ThreadSink:
    """MonitorSink that hands observations to the loop, preserving their order."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[str, object]]
    ) -> None:
        self._loop = loop
        self._queue = queue

    def _post(self, kind: str, arg: object = None) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, arg))

    def service_up(self) -> None:
        self._post("service_up")

    def service_down(self, reason: str) -> None:
        self._post("service_down", reason)

    def reader_added(self, status: scard.ReaderStatus) -> None:
        self._post("reader_added", status)

    def reader_removed(self, name: str) -> None:
        self._post("reader_removed", name)

    def card_inserted(self, status: scard.ReaderStatus) -> None:
        self._post("card_inserted", status)

    def card_removed(self, name: str) -> None:
        self._post("card_removed", name)


class CardManager:
    """Everything the CardService and PivService need from the readers."""

    def __init__(
        self,
        config: PcscConfig,
        *,
        max_sessions_per_owner: int = 4,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self.hub = EventHub(config.journal_size, config.subscriber_queue)
        self.available = False
        self._max_sessions = max_sessions_per_owner
        self._on_health = on_health
        self._slots: dict[str, ReaderSlot] = {}
        self._sessions: dict[str, Session] = {}
        self._notes: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._monitor: ReaderMonitor | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._monitor = ReaderMonitor(_ThreadSink(loop, self._notes), self.config.readers)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="pcsc-dispatch")
        self._monitor.start()

    async def wait_first_attempt(self, timeout: float = 2.0) -> None:
        """Until the monitor has reached pcscd once (or *timeout*): for READY=1 and tests."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), timeout)

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            self._end_session(session, reset=False)
        if self._monitor is not None:
            await asyncio.to_thread(self._monitor.stop)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        workers = [slot.worker for slot in self._slots.values()]
        self._slots.clear()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))

    @property
    def monitor_alive(self) -> bool:
        return self._monitor is not None and self._monitor.alive

    @property
    def monitor(self) -> ReaderMonitor | None:
        """The monitor thread's owner (watchdog liveness probe, test hooks)."""
        return self._monitor

    # --- monitor notes, handled in order ------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            kind, arg = await self._notes.get()
            try:
                await getattr(self, f"_on_{kind}")(arg)
            except Exception:
                log.exception("handling %s failed", kind)

    async def _on_service_up(self, _: object) -> None:
        self.available = True
        self._first_attempt.set()
        self.hub.publish(EventType.SERVICE_UP)
        self._health(True)

    async def _on_service_down(self, reason: object) -> None:
        was_available = self.available
        self.available = False
        self._first_attempt.set()
        for name in list(self._slots):
            await self._drop_reader(name, publish=False)
        if was_available:
            self.hub.publish(EventType.SERVICE_DOWN)
        self._health(False)

    async def _on_reader_added(self, status: object) -> None:
        assert isinstance(status, scard.ReaderStatus)
        slot = ReaderSlot(status.name, ReaderWorker(status.name))
        slot.state = ReaderState.UNAVAILABLE if status.unavailable else ReaderState.EMPTY
        self._slots[status.name] = slot
        self.hub.publish(EventType.READER_ADDED, reader=slot.name, state=slot.state)
        if status.present:
            await self._on_card_inserted(status)

    async def _on_reader_removed(self, name: object) -> None:
        assert isinstance(name, str)
        await self._drop_reader(name, publish=True)

    async def _drop_reader(self, name: str, publish: bool) -> None:
        slot = self._slots.pop(name, None)
        if slot is None:
            return
        slot.insertion = slot.worker.insertion = next(_insertions)
        if slot.session is not None:
            self._end_session(slot.session, reset=False)
        asyncio.get_running_loop().run_in_executor(None, slot.worker.stop)
        if publish:
            self.hub.publish(EventType.READER_REMOVED, reader=name)

    async def _on_card_inserted(self, status: object) -> None:
        assert isinstance(status, scard.ReaderStatus)
        slot = self._slots.get(status.name)
        if slot is None:
            return
        slot.insertion = slot.worker.insertion = next(_insertions)
        slot.atr = status.atr
        slot.identity = None
        settling = slot.settling = asyncio.Event()
        try:
            if status.mute:
                slot.state = ReaderState.MUTE
            else:
                slot.identity = await self._read_identity(slot)
                slot.state = ReaderState.PRESENT
        finally:
            settling.set()
            if slot.settling is settling:
                slot.settling = None
        self.hub.publish(
            EventType.CARD_INSERTED,
            reader=slot.name,
            state=slot.state,
            atr=slot.atr,
            card=slot.identity,
        )

    async def _read_identity(self, slot: ReaderSlot) -> CardIdentity | None:
        """Who the new card is. Retried while the card is still this insertion: right
        after insertion a reader may report the card unpowered or reset (pcscd powers
        it up on its own schedule), which is no removal."""
        insertion = slot.insertion
        deadline = asyncio.get_running_loop().time() + IDENTITY_TIMEOUT
        for attempt in range(IDENTITY_ATTEMPTS):
            future = slot.worker.submit(read_identity, insertion)
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), max(remaining, 0.01))
            except (errors.CardRemoved, errors.CardUnresponsive) as exc:
                if slot.insertion != insertion or attempt + 1 == IDENTITY_ATTEMPTS:
                    log.info("%s: card identity not read: %s", slot.name, exc)
                    return None
                log.debug("%s: identity read failed (%s); retrying", slot.name, exc)
                await asyncio.sleep(IDENTITY_RETRY_DELAY * (attempt + 1))
            except (errors.GatewayError, TimeoutError) as exc:
                log.info("%s: card identity not read: %s", slot.name, exc)
                return None
        return None

    async def _on_card_removed(self, name: object) -> None:
        assert isinstance(name, str)
        slot = self._slots.get(name)
        if slot is None:
            return
        slot.insertion = slot.worker.insertion = next(_insertions)
        slot.state, slot.atr, slot.identity = ReaderState.EMPTY, b"", None
        if slot.session is not None:
            self._end_session(slot.session, reset=False)
        self.hub.publish(EventType.CARD_REMOVED, reader=name, state=slot.state)

    def _health(self, serving: bool) -> None:
        if self._on_health is not None:
            self._on_health(serving)

    # --- readers and events -------------------------------------------------------

    def readers(self) -> list[ReaderSlot]:
        return [self._slots[name] for name in sorted(self._slots)]

    async def settled_readers(self, timeout: float | None = None) -> list[ReaderSlot]:
        """The readers, once every card just seen has been identified (or *timeout*).

        A card is reported only once the daemon knows who it is, so a client that
        lists readers right after an insertion sees the card with its identity.
        """
        pending = [s.settling.wait() for s in self._slots.values() if s.settling is not None]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*pending), min(timeout or IDENTITY_TIMEOUT, IDENTITY_TIMEOUT)
                )
        return self.readers()

    def snapshot(self) -> Iterable[CardEvent]:
        now = time.time()
        for slot in self.readers():
            yield CardEvent(
                0,
                now,
                EventType.READER_STATE,
                reader=slot.name,
                state=slot.state,
                atr=slot.atr,
                card=slot.identity,
            )

    def subscribe(
        self, after_sequence: int, event_filter: EventFilter
    ) -> tuple[list[CardEvent], Subscription]:
        return self.hub.subscribe(after_sequence, event_filter, self.snapshot)

    def _slot(self, reader: str) -> ReaderSlot:
        if not self.available:
            raise errors.PcscUnavailable("pcscd is not available")
        slot = self._slots.get(reader)
        if slot is None:
            raise errors.ReaderNotFound(f"no reader named {reader!r}", reader=reader)
        return slot

    # --- jobs -------------------------------------------------------------------------

    async def run(
        self,
        fn: Callable[[CardLink], T],
        *,
        owner: str,
        reader: str | None = None,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> T:
        """Run *fn* on the card: inside a session, or as a one-job transaction."""
        if session_id:
            return await self._run_in_session(fn, session_id, owner)
        if not reader:
            raise errors.InvalidArgument("a reader or a session_id is required", field="reader")
        slot = self._slot(reader)
        # A job queued while a card is in the reader belongs to that card: if it is
        # pulled before the job's turn, the job fails CARD_REMOVED like a running one.
        await self._settle(slot, timeout)
        queued_for = slot.insertion if slot.state is ReaderState.PRESENT else None
        await self._acquire(slot, timeout)
        try:
            if queued_for is not None and slot.insertion != queued_for:
                raise errors.CardRemoved(
                    "the card was removed while the job waited", reader=slot.name
                )
            await self._require_card(slot, timeout)
            return await asyncio.wrap_future(slot.worker.submit(fn, slot.insertion))
        finally:
            slot.access.release()

    async def _run_in_session(self, fn: Callable[[CardLink], T], session_id: str, owner: str) -> T:
        session = self.session(session_id, owner)
        slot = self._slot(session.reader)
        self._touch(session)
        try:
            return await asyncio.wrap_future(slot.worker.submit(fn, session.insertion))
        finally:
            if not session.closed:
                self._touch(session)

    async def _acquire(self, slot: ReaderSlot, timeout: float | None) -> None:
        # The common case, free and nobody queued, needs no wait_for task; with waiters
        # queued (asyncio.Lock keeps them in _waiters) the deadline must apply.
        if not slot.access.locked() and not getattr(slot.access, "_waiters", None):
            await slot.access.acquire()
            return
        try:
            await asyncio.wait_for(slot.access.acquire(), timeout)
        except TimeoutError:
            raise errors.ReaderBusy(
                f"reader {slot.name!r} stayed busy past the deadline", reader=slot.name
            ) from None

    @staticmethod
    async def _settle(slot: ReaderSlot, timeout: float | None) -> None:
        """Wait (up to *timeout*) while a card just seen in *slot* is being identified."""
        if slot.settling is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.settling.wait(), timeout)

    async def _require_card(self, slot: ReaderSlot, timeout: float | None) -> None:
        await self._settle(slot, timeout)
        if slot.state is not ReaderState.PRESENT:
            raise errors.CardNotPresent(f"no card in reader {slot.name!r}", reader=slot.name)

    # --- sessions ---------------------------------------------------------------------

    def session(self, session_id: str, owner: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise errors.SessionNotFound("no such session (closed, expired or never opened)")
        if session.owner != owner:
            raise errors.SessionNotOwned("the session belongs to another identity")
        return session

    async def open_session(
        self, reader: str, ttl: float | None, *, owner: str, timeout: float | None = None
    ) -> Session:
        held = sum(1 for s in self._sessions.values() if s.owner == owner)
        if held >= self._max_sessions:
            raise errors.TooManySessions(
                f"at most {self._max_sessions} sessions per identity", max=self._max_sessions
            )
        slot = self._slot(reader)
        granted = min(ttl or self.config.max_session_ttl, self.config.max_session_ttl)
        await self._acquire(slot, timeout)
        try:
            await self._require_card(slot, timeout)
        except errors.GatewayError:
            slot.access.release()
            raise
        session = Session(secrets.token_urlsafe(24), reader, owner, slot.insertion, granted)
        slot.session = session
        self._sessions[session.id] = session
        self._touch(session)
        log.info("session opened on %s (ttl %.1fs)", reader, granted)
        return session

    async def close_session(self, session_id: str, owner: str) -> None:
        self._end_session(self.session(session_id, owner), reset=True)

    def _touch(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        if session.timer is not None:
            session.timer.cancel()
        session.expires_at = loop.time() + session.ttl
        session.timer = loop.call_later(session.ttl, self._expire, session)

    def _expire(self, session: Session) -> None:
        log.info("session on %s expired", session.reader)
        self._end_session(session, reset=True)

    def _end_session(self, session: Session, *, reset: bool) -> None:
        """Forget the session and let the next waiter in; reset the card so no PIN
        status outlives it (the reset is queued before any later job)."""
        if session.closed:
            return
        session.closed = True
        if session.timer is not None:
            session.timer.cancel()
        self._sessions.pop(session.id, None)
        slot = self._slots.get(session.reader)
        if slot is None or slot.session is not session:
            return
        slot.session = None
        if reset and slot.insertion == session.insertion:
            slot.worker.submit(_reset_card, session.insertion)
        slot.access.release()

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())


def _reset_card(link: CardLink) -> None:
    link.reset()
