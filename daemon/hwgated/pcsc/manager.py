"""The card subsystem on the asyncio side: readers, jobs, sessions, events.

The monitor thread's observations arrive here through one queue and are handled
in order by one task, so every subscriber sees a reader's events in the order
pcscd reported them. Access to a reader is a FIFO lock (:class:`ReaderAccess`):
a one-shot job holds it for one job, a session for its whole life; everyone else
queues up to their own deadline. Card I/O itself happens on the reader's worker
thread.

Cancellation safety: a client may cancel any call at any await. Every reader
lock taken here is released in a ``finally`` (or handed to the session that owns
it), and a session belongs to its slot object, not to a name lookup, so ending
it always releases the reader it holds, even after the reader was dropped.

Share mode (``[pcsc] share_mode``): in ``shared`` mode the workers share the
card with other programs and hold a PC/SC transaction per job; a session holds
one from OpenSession (which waits for it, then resets the card: the session
starts from no PIN status, whoever verified one before) until it ends (the job
that ends the session lets go), so other programs wait for it, never interleave.

Who a card is, is not this layer's business: the daemon injects ``identify``,
run as the first job on every insertion; its result rides along in the reader
slot and the card events as an opaque, typed value (``IdentityT``).
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
from typing import Any, Generic, TypeVar

from hwgated import errors
from hwgated.pcsc import scard
from hwgated.pcsc.access import ReaderAccess
from hwgated.pcsc.config import PcscConfig, ShareMode
from hwgated.pcsc.connection import Connection
from hwgated.pcsc.events import CardEvent, EventFilter, EventHub, EventType, ReaderState
from hwgated.pcsc.events import Subscription as Subscription
from hwgated.pcsc.monitor import ReaderMonitor
from hwgated.pcsc.tombstones import EndReason, Tombstones
from hwgated.pcsc.worker import ReaderWorker

log = logging.getLogger(__name__)

T = TypeVar("T")
IdentityT = TypeVar("IdentityT")  # what the injected ``identify`` says about a card

IDENTITY_TIMEOUT = 5.0
IDENTITY_ATTEMPTS = 3
IDENTITY_RETRY_DELAY = 0.05  # seconds; pcscd needs a moment to power a fresh card
_insertions = itertools.count(1)


@dataclass
class ReaderSlot(Generic[IdentityT]):
    name: str
    worker: ReaderWorker
    state: ReaderState = ReaderState.EMPTY
    atr: bytes = b""
    identity: IdentityT | None = None
    insertion: int = 0
    access: ReaderAccess = field(init=False)
    session: Session | None = None
    # Set while a newly seen card's identity is read: jobs wait for it, not fail.
    settling: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.access = ReaderAccess(self.name)


@dataclass
class Session:
    id: str
    slot: ReaderSlot[Any]  # the slot whose reader this session holds
    owner: str
    insertion: int
    ttl: float
    expires_at: float = 0.0  # loop time
    timer: asyncio.TimerHandle | None = None
    closed: bool = False

    @property
    def reader(self) -> str:
        return self.slot.name


def _deadline(timeout: float | None) -> float | None:
    """A caller's timeout as a loop-time deadline, so waits in turn share it."""
    return None if timeout is None else asyncio.get_running_loop().time() + timeout


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


class CardManager(Generic[IdentityT]):
    """Everything the CardService and PivService need from the readers.

    *identify* runs as a job on every insertion (None: cards stay anonymous);
    it returns None when it cannot tell, and its errors count as "not read".
    """

    def __init__(
        self,
        config: PcscConfig,
        *,
        identify: Callable[[Connection], IdentityT | None] | None = None,
        max_sessions_per_owner: int = 4,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self._shared = config.share_mode is ShareMode.SHARED
        self._identify = identify
        self.hub: EventHub[IdentityT] = EventHub(config.journal_size, config.subscriber_queue)
        self.available = False
        self._max_sessions = max_sessions_per_owner
        self._on_health = on_health
        self._slots: dict[str, ReaderSlot[IdentityT]] = {}
        self._sessions: dict[str, Session] = {}
        self.tombstones = Tombstones()  # why recently ended sessions ended
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
            self._end_session(session, EndReason.SHUTDOWN, reset=False)
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
        """A reader seen for the first time, or seen again: idempotent, so a
        repeated note never replaces a slot (and orphans its worker and session)."""
        assert isinstance(status, scard.ReaderStatus)
        known = self._slots.get(status.name)
        if known is not None:
            log.debug("%s: reader reported again; reconciling its card state", status.name)
            if known.state is not ReaderState.EMPTY and not status.present:
                await self._on_card_removed(status.name)
            elif known.state is ReaderState.EMPTY and status.present:
                await self._on_card_inserted(status)
            return
        worker = ReaderWorker(status.name, shared=self._shared)
        slot: ReaderSlot[IdentityT] = ReaderSlot(status.name, worker)
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
        # Callers queued for this reader fail now, not at their deadlines.
        if publish:
            slot.access.close(
                lambda: errors.ReaderNotFound(f"reader {name!r} was removed", reader=name)
            )
        else:
            slot.access.close(lambda: errors.PcscUnavailable("pcscd is not available"))
        if slot.session is not None:
            why = EndReason.READER_REMOVED if publish else EndReason.PCSC_DOWN
            self._end_session(slot.session, why, reset=False)
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

    async def _read_identity(self, slot: ReaderSlot[IdentityT]) -> IdentityT | None:
        """Who the new card is. Retried while the card is still this insertion: right
        after insertion a reader may report the card unpowered or reset (pcscd powers
        it up on its own schedule), which is no removal."""
        read_identity = self._identify
        if read_identity is None:
            return None
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
            self._end_session(slot.session, EndReason.CARD_REMOVED, reset=False)
        self.hub.publish(EventType.CARD_REMOVED, reader=name, state=slot.state)

    async def reidentify(
        self,
        reader: str,
        stale: Callable[[IdentityT | None], bool],
        timeout: float | None = None,
    ) -> None:
        """Read the card's identity again if *stale* says the one on record may be
        out of date (e.g. a raw Transmit may have installed a PIV application).

        Runs as a one-shot job in turn with everyone else's (never inside someone's
        session); a card changed or pulled meanwhile keeps what its own insertion
        found. Failures leave the identity as it was: this is a refresh, not a
        condition of the caller's success.
        """
        slot = self._slots.get(reader)
        identify = self._identify
        if identify is None or slot is None or slot.state is not ReaderState.PRESENT:
            return
        if not stale(slot.identity):
            return
        insertion = slot.insertion
        try:
            await slot.access.acquire(_deadline(timeout))
        except (errors.HwgateError, TimeoutError):
            return
        try:
            if slot.insertion != insertion:
                return
            job = slot.worker.submit(identify, insertion)
            identity = await asyncio.wrap_future(job)
        except (errors.HwgateError, TimeoutError) as exc:
            log.info("%s: card identity not read again: %s", reader, exc)
            return
        finally:
            slot.access.release()
        if slot.insertion == insertion and identity is not None:
            slot.identity = identity

    def _health(self, serving: bool) -> None:
        if self._on_health is not None:
            self._on_health(serving)

    # --- readers and events -------------------------------------------------------

    def readers(self) -> list[ReaderSlot[IdentityT]]:
        return [self._slots[name] for name in sorted(self._slots)]

    async def settled_readers(self, timeout: float | None = None) -> list[ReaderSlot[IdentityT]]:
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

    def snapshot(self) -> Iterable[CardEvent[IdentityT]]:
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
    ) -> tuple[list[CardEvent[IdentityT]], Subscription[IdentityT]]:
        return self.hub.subscribe(after_sequence, event_filter, self.snapshot)

    def _slot(self, reader: str) -> ReaderSlot[IdentityT]:
        if not self.available:
            raise errors.PcscUnavailable("pcscd is not available")
        slot = self._slots.get(reader)
        if slot is None:
            raise errors.ReaderNotFound(f"no reader named {reader!r}", reader=reader)
        return slot

    # --- jobs -------------------------------------------------------------------------

    async def run(
        self,
        fn: Callable[[Connection], T],
        *,
        owner: str,
        reader: str | None = None,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> T:
        """Run *fn* on the card: inside a session, or as a one-job transaction.

        A one-shot job that changed a security status (a raw VERIFY, say) ends
        with a card reset on the worker, before any later job of anyone runs.
        """
        if session_id:
            return await self._run_in_session(fn, session_id, owner)
        if not reader:
            raise errors.InvalidArgument("a reader or a session_id is required", field="reader")
        slot = self._slot(reader)
        deadline = _deadline(timeout)
        # A job queued while a card is in the reader belongs to that card: if it is
        # pulled before the job's turn, the job fails CARD_REMOVED like a running one.
        await self._settle(slot, deadline)
        queued_for = slot.insertion if slot.state is ReaderState.PRESENT else None
        await slot.access.acquire(deadline)
        try:
            if queued_for is not None and slot.insertion != queued_for:
                raise errors.CardRemoved(
                    "the card was removed while the job waited", reader=slot.name
                )
            await self._require_card(slot, deadline)
            # Cancelling the caller does not stop a job the worker already runs;
            # the worker's FIFO keeps the next holder's jobs behind it.
            job = slot.worker.submit(fn, slot.insertion, reset_after=True)
            return await asyncio.wrap_future(job)
        finally:
            slot.access.release()

    async def _run_in_session(
        self, fn: Callable[[Connection], T], session_id: str, owner: str
    ) -> T:
        session = self.session(session_id, owner)
        slot = self._slot(session.reader)
        self._touch(session)
        try:
            job = slot.worker.submit(fn, session.insertion, hold=True)
            return await asyncio.wrap_future(job)
        finally:
            if not session.closed:
                self._touch(session)

    @staticmethod
    async def _settle(slot: ReaderSlot[IdentityT], deadline: float | None) -> None:
        """Wait (up to *deadline*) while a card just seen in *slot* is being identified."""
        settling = slot.settling
        if settling is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await settling.wait()

    async def _require_card(self, slot: ReaderSlot[IdentityT], deadline: float | None) -> None:
        await self._settle(slot, deadline)
        if slot.state is not ReaderState.PRESENT:
            raise errors.CardNotPresent(f"no card in reader {slot.name!r}", reader=slot.name)

    # --- sessions ---------------------------------------------------------------------

    def session(self, session_id: str, owner: str, *, closing: bool = False) -> Session:
        """The caller's live session; for one that ended, the error saying why (only
        to its owner; *closing*: the CloseSession form, see pcsc.tombstones)."""
        session = self._sessions.get(session_id)
        if session is None:  # ended recently (its owner learns why) or unknown
            raise self.tombstones.error_for(session_id, owner, closing=closing)
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
        deadline = _deadline(timeout)
        await slot.access.acquire(deadline)
        try:
            await self._require_card(slot, deadline)
            if self._shared:
                await self._hold_card(slot, deadline)
        except BaseException:  # CancelledError included: the reader is never kept
            slot.access.release()
            raise
        # From here to the return there is no await: the session either exists and
        # is returned, or (no session) the reader was released above.
        session = Session(secrets.token_urlsafe(24), slot, owner, slot.insertion, granted)
        slot.session = session
        self._sessions[session.id] = session
        self._touch(session)
        log.info("session opened on %s (ttl %.1fs)", reader, granted)
        return session

    async def _hold_card(self, slot: ReaderSlot[IdentityT], deadline: float | None) -> None:
        """Shared mode: take the session's PC/SC transaction before the session exists,
        waiting (up to *deadline*) while another program holds the card, and reset
        the card inside it: a PIN another program verified and left verified must not
        serve the session (in exclusive mode the previous holder's reset sees to
        that). If this fails or is cancelled, a job queued behind it lets go."""
        insertion = slot.insertion
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.wrap_future(slot.worker.submit(_reset_card, insertion, hold=True))
        except BaseException as exc:
            slot.worker.submit(_nothing, insertion)
            if isinstance(exc, TimeoutError):
                raise errors.ReaderBusy(
                    f"another program held the card in {slot.name!r} past the deadline",
                    reader=slot.name,
                ) from None
            raise

    async def close_session(self, session_id: str, owner: str) -> None:
        session = self.session(session_id, owner, closing=True)
        self._end_session(session, EndReason.CLOSED, reset=True)

    def abandon_session(self, session: Session) -> None:
        """Close a session whose id never reached its caller (the OpenSession call
        was cancelled or failed after the session was made): nobody could use or
        close it, so it must not hold the reader until its TTL."""
        if not session.closed:
            log.info("session on %s closed: its caller never received it", session.reader)
            self._end_session(session, EndReason.CLOSED, reset=True)

    def _touch(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        if session.timer is not None:
            session.timer.cancel()
        session.expires_at = loop.time() + session.ttl
        session.timer = loop.call_later(session.ttl, self._expire, session)

    def _expire(self, session: Session) -> None:
        log.info("session on %s expired", session.reader)
        self._end_session(session, EndReason.EXPIRED, reset=True)

    def _end_session(self, session: Session, why: EndReason, *, reset: bool) -> None:
        """Forget the session (keeping a tombstone saying *why*) and let the next
        waiter in; reset the card so no PIN status outlives it (the reset is queued
        before any later job)."""
        if session.closed:
            return
        session.closed = True
        self.tombstones.bury(session.id, session.owner, session.reader, why, session.ttl)
        if session.timer is not None:
            session.timer.cancel()
        self._sessions.pop(session.id, None)
        slot = session.slot
        if slot.session is not session:
            return
        slot.session = None
        # Shared mode: always reset (a daemon shutting down too), as the job that also
        # ends the session's transaction: other programs are waiting for the card.
        still_there = slot.insertion == session.insertion and not slot.access.closed
        if still_there and (reset or self._shared):
            slot.worker.submit(_reset_card, session.insertion)
        slot.access.release()

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())


def _reset_card(connection: Connection) -> None:
    connection.reset()


def _nothing(connection: Connection) -> None:
    """A job that only takes (``hold``) or ends the PC/SC transaction around it."""
