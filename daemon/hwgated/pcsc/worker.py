"""One worker thread per reader: it owns the card connection and runs jobs FIFO.

A job is a callable that receives a :class:`CardLink` and runs to completion
before the next one starts, so APDUs of two clients never interleave. The
worker has its own PC/SC context (pcsc-lite serializes calls per context, and
the monitor's context is blocked in SCardGetStatusChange). Each job names the
card insertion it was meant for: if the card was swapped in between, the job
fails with CARD_REMOVED instead of running against someone else's card.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hwgated import errors
from hwgated.pcsc import scard
from hwgated.piv.session import PivCard

log = logging.getLogger(__name__)

T = TypeVar("T")

INS_VERIFY = 0x20
# Instructions that read and select but never change a security status: SELECT,
# GET DATA (CA/CB), GET RESPONSE, READ BINARY/RECORD (both forms), GET CHALLENGE.
# Any other APDU (VERIFY, GENERAL AUTHENTICATE, CHANGE REFERENCE DATA, a vendor's
# own authentication, ...) taints the link: a one-shot job that sent one ends
# with a card reset, so no security status outlives the job that set it.
STATELESS_INS = frozenset({0xA4, 0xCA, 0xCB, 0xC0, 0xB0, 0xB1, 0xB2, 0xB3, 0x84})

# Called with the reader name after every APDU exchange (metrics); set by the daemon.
# A plain hook keeps this layer free of any metrics library.
apdu_observer: Callable[[str], None] | None = None
VANISH_WAIT = 1.0  # seconds; longer than pcscd's ~400 ms presence polling


def _stateless(apdu: bytes) -> bool:
    """True if *apdu* cannot change a security status (VERIFY without data only
    asks for the retry counter)."""
    if len(apdu) < 4:
        return False
    return apdu[1] in STATELESS_INS or (apdu[1] == INS_VERIFY and len(apdu) == 4)


@dataclass
class InsertionState:
    """What the worker knows about the card of one insertion."""

    insertion: int
    atr: bytes = b""
    cache: dict[str, Any] = field(default_factory=dict)


class CardLink:
    """A job's view of the card: raw transmit, the PIV application, per-card cache.

    ``piv`` re-selects the PIV application only when something may have changed
    the selection (a raw Transmit, a reset, a fresh connection): an extra SELECT
    between VERIFY and a "PIN always" signature would void the PIN on real cards.
    """

    def __init__(self, reader: str, card: scard.Card, state: InsertionState) -> None:
        self.reader = reader
        self._card = card
        self.state = state
        self._piv = PivCard(self._transmit)
        self._piv_selected = False
        self.last_was_verify = False
        # Set when an APDU that may change a security status went to the card.
        self.tainted = False

    @property
    def cache(self) -> dict[str, Any]:
        return self.state.cache

    def _transmit(self, apdu: bytes) -> bytes:
        self.last_was_verify = len(apdu) >= 2 and apdu[1] == INS_VERIFY
        if not _stateless(apdu):
            self.tainted = True
        response = self._card.transmit(apdu)
        if apdu_observer is not None:
            apdu_observer(self.reader)
        return response

    def transmit_raw(self, apdu: bytes) -> bytes:
        """A client's own APDU: afterwards nothing is known about the selection."""
        self._piv_selected = False
        return self._transmit(apdu)

    def piv(self) -> PivCard:
        if not self._piv_selected:
            self._piv.select()  # NotFound (6A82) on a card without PIV
            self._piv_selected = True
        return self._piv

    def reset(self) -> None:
        """Warm reset: clears the PIN status of every application."""
        self._piv_selected = False
        self.last_was_verify = False
        self._card.reset()
        self.tainted = False


@dataclass
class _Job(Generic[T]):
    fn: Callable[[CardLink], T]
    future: concurrent.futures.Future[T]
    insertion: int | None
    # A one-shot job: if it touched a security status, the card is reset after it.
    reset_after: bool = False


class ReaderWorker:
    """The thread that owns one reader's card connection."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.insertion = 0  # set by the manager (loop thread) on every insert/remove
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._context: scard.Context | None = None
        self._card: scard.Card | None = None
        self._link: CardLink | None = None
        self.busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"reader:{reader}", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[CardLink], T],
        insertion: int | None = None,
        *,
        reset_after: bool = False,
    ) -> concurrent.futures.Future[T]:
        """Queue *fn*; with *insertion*, it runs only on that insertion's card.

        With *reset_after* (a one-shot job, no session around it) the card is
        reset after *fn* whenever *fn* sent an APDU that may have changed a
        security status, before any later job runs: a PIN verified by one caller
        is never inherited by the next.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put(_Job(fn, future, insertion, reset_after))
        return future

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                if job.future.set_running_or_notify_cancel():
                    self._execute(job)
        finally:
            self._disconnect()
            if self._context is not None:
                self._context.release()

    def _execute(self, job: _Job[Any]) -> None:
        if job.insertion is not None and job.insertion != self.insertion:
            job.future.set_exception(errors.CardRemoved("the card was removed", reader=self.reader))
            return
        try:
            link = self._connect(job.insertion)
            link.tainted = False
            try:
                result = job.fn(link)
            finally:
                if job.reset_after and link.tainted:
                    self._reset_after_job(link)
            job.future.set_result(result)
        except scard.CardGone as exc:
            self._disconnect()
            job.future.set_exception(
                errors.CardRemoved(
                    f"the card was removed during the operation ({exc})", reader=self.reader
                )
            )
        except scard.NoCard:
            self._disconnect()
            # A job tied to an insertion was meant for a card that is gone now.
            gone: errors.GatewayError = (
                errors.CardRemoved("the card was removed before the job ran", reader=self.reader)
                if job.insertion is not None
                else errors.CardNotPresent("no card in the reader", reader=self.reader)
            )
            job.future.set_exception(gone)
        except scard.ServiceUnavailable as exc:
            self._drop_context()
            job.future.set_exception(errors.PcscUnavailable(f"pcscd unavailable: {exc}"))
        except scard.ReaderGone:
            self._drop_context()
            job.future.set_exception(
                errors.ReaderNotFound("the reader is gone", reader=self.reader)
            )
        except scard.PcscError as exc:
            self._disconnect()
            # A card pulled mid-APDU often surfaces as a generic transport failure
            # (SCARD_E_NOT_TRANSACTED) before pcscd notices it is gone: ask pcscd.
            if self._card_vanished():
                job.future.set_exception(
                    errors.CardRemoved(
                        f"the card was removed during the operation ({exc})",
                        reader=self.reader,
                    )
                )
            else:
                job.future.set_exception(errors.CardUnresponsive(str(exc), reader=self.reader))
        except BaseException as exc:  # the job's own error (PIV status words, bugs)
            job.future.set_exception(exc)

    def _reset_after_job(self, link: CardLink) -> None:
        """Clear the security status a one-shot job left; never raises.

        If the warm reset fails the handle is dropped with SCARD_RESET_CARD, so
        the next job reconnects to a card whose status is cleared either way.
        """
        try:
            link.reset()
        except scard.PcscError as exc:
            log.info("%s: reset after a job failed (%s); reconnecting", self.reader, exc)
            self._disconnect(reset=True)

    def _card_vanished(self) -> bool:
        """True if the card left (or was swapped) within VANISH_WAIT after a failure.

        pcscd polls vpcd-style readers every ~400 ms, so its verdict may lag the
        failure; this waits on the reader's state change with a deadline.
        """
        if self._context is None:
            return False
        deadline = time.monotonic() + VANISH_WAIT
        try:
            (first,) = self._context.get_status_change([(self.reader, scard.STATE_UNAWARE)], 0)
            state = first
            while state.present and state.event_count == first.event_count:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    return False
                current = state.event_state & ~scard.STATE_CHANGED
                (state,) = self._context.get_status_change([(self.reader, current)], remaining_ms)
            return True
        except scard.Timeout:
            return False
        except scard.PcscError:
            return False

    def _connect(self, insertion: int | None) -> CardLink:
        current = self.insertion
        if insertion is not None and insertion != current:
            raise scard.CardGone("connect", 0x80100069)
        if self._link is not None and self._link.state.insertion == current:
            return self._link
        self._disconnect()
        if self._context is None:
            self._context = scard.Context()
        card = self._context.connect(self.reader)
        self._card = card
        self._link = CardLink(self.reader, card, InsertionState(current, card.atr()))
        return self._link

    def _disconnect(self, *, reset: bool = False) -> None:
        if self._card is not None:
            self._card.disconnect(reset)
        self._card = None
        self._link = None

    def _drop_context(self) -> None:
        self._disconnect()
        if self._context is not None:
            self._context.release()
        self._context = None
