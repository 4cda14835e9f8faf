"""One worker thread per reader: it owns the card connection and runs jobs FIFO.

A job is a callable that receives a :class:`CardConnection` and runs to completion
before the next one starts, so APDUs of two clients never interleave. The
worker has its own PC/SC context (pcsc-lite serializes calls per context, and
the monitor's context is blocked in SCardGetStatusChange). Each job names the
card insertion it was meant for: if the card was swapped in between, the job
fails with CARD_REMOVED instead of running against someone else's card.

In shared mode (``[pcsc] share_mode = "shared"``) the handle is shared with other
programs and every job runs inside a PC/SC transaction: a one-shot job's ends
with it, a session's jobs (``hold``) keep it until the job that ends the
session. Between transactions another program may use the card, select another
application, or reset it; a reset shows up as SCARD_W_RESET_CARD when the next
transaction begins, and the worker acknowledges it (SCardReconnect, leaving the
card as it is) and tells the connection, whose applications then select
themselves again and forget every PIN they had verified.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hwgated import errors
from hwgated.pcsc import scard
from hwgated.pcsc.connection import CardConnection

log = logging.getLogger(__name__)

T = TypeVar("T")

# Called with the reader name after every APDU exchange (metrics); set by the daemon.
# A plain hook keeps this layer free of any metrics library.
apdu_observer: Callable[[str], None] | None = None
VANISH_WAIT = 1.0  # seconds; longer than pcscd's ~400 ms presence polling
# Resets by other programs acknowledged in a row before a job gives up: one is
# normal, a program resetting the card in a loop is not.
RESET_RETRIES = 3


def _observe(reader: str) -> None:
    if apdu_observer is not None:
        apdu_observer(reader)


@dataclass
class _Job(Generic[T]):
    fn: Callable[[CardConnection], T]
    future: concurrent.futures.Future[T]
    insertion: int | None
    # A one-shot job: if it touched a security status, the card is reset after it.
    reset_after: bool = False
    # A session's job: in shared mode its PC/SC transaction stays held after it.
    hold: bool = False


class ReaderWorker:
    """The thread that owns one reader's card connection."""

    def __init__(self, reader: str, *, shared: bool = False) -> None:
        self.reader = reader
        self.shared = shared
        self._held = False  # shared mode: a transaction on self._card is ours
        self.insertion = 0  # set by the manager (loop thread) on every insert/remove
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._context: scard.Context | None = None
        self._card: scard.Card | None = None
        self._connection: CardConnection | None = None
        self.busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"reader:{reader}", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[CardConnection], T],
        insertion: int | None = None,
        *,
        reset_after: bool = False,
        hold: bool = False,
    ) -> concurrent.futures.Future[T]:
        """Queue *fn*; with *insertion*, it runs only on that insertion's card.

        With *reset_after* (a one-shot job, no session around it) the card is
        reset after *fn* whenever *fn* sent an APDU that may have changed a
        security status, before any later job runs: a PIN verified by one caller
        is never inherited by the next.

        With *hold* (a session's job; shared mode only) the PC/SC transaction
        stays held after *fn*, so no other program reaches the card between the
        session's calls; the next job without *hold* ends it.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put(_Job(fn, future, insertion, reset_after, hold))
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
            connection = self._connect(job.insertion)
            self._enter(connection)
            connection.tainted = False
            try:
                result = job.fn(connection)
            finally:
                if job.reset_after and connection.tainted:
                    self._reset_after_job(connection)
                if not job.hold:
                    self._leave()
            job.future.set_result(result)
        except scard.CardGone as exc:
            if self.shared and isinstance(exc, scard.CardReset):
                # pcsc-lite keeps other programs' resets out of a transaction; should
                # one come through anyway (another PC/SC stack), the card is still there.
                self._acknowledge_reset()
                job.future.set_exception(
                    errors.CardUnresponsive(
                        f"another program reset the card during the operation ({exc})",
                        reader=self.reader,
                    )
                )
                return
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

    def _enter(self, connection: CardConnection) -> None:
        """Shared mode: hold a transaction for the job (keeping a session's).

        Beginning one waits while another program holds its own. A reset that
        program did meanwhile (SCARD_W_RESET_CARD) is acknowledged and reported
        to the connection; either way the connection hears that someone else may
        have used the card, so no selection is trusted across transactions.
        """
        if not self.shared or self._held:
            return
        card = self._card
        assert card is not None
        for _ in range(RESET_RETRIES):
            try:
                card.begin_transaction()
            except scard.CardReset:
                log.info("%s: another program reset the card; verified PINs are void", self.reader)
                card.reconnect(reset=False)
                connection.outside_reset()
                continue
            self._held = True
            connection.outside_use()
            return
        raise errors.CardUnresponsive(
            f"another program reset the card {RESET_RETRIES} times in a row", reader=self.reader
        )

    def _leave(self) -> None:
        """End the job's transaction (shared mode); never raises. If ending it fails,
        the handle is dropped, which ends it too."""
        if not self._held:
            return
        self._held = False
        assert self._card is not None
        try:
            self._card.end_transaction()
        except scard.PcscError as exc:
            log.info("%s: ending the transaction failed (%s); reconnecting", self.reader, exc)
            self._disconnect()

    def _acknowledge_reset(self) -> None:
        """Take note of a reset another program did during a job: the connection
        (and its per-insertion state) stays; a handle that cannot be reconnected
        is dropped."""
        card, connection = self._card, self._connection
        if card is None or connection is None:
            return
        try:
            card.reconnect(reset=False)
        except scard.PcscError as exc:
            log.info("%s: reconnecting after a reset failed (%s)", self.reader, exc)
            self._disconnect()
            return
        connection.outside_reset()

    def _reset_after_job(self, connection: CardConnection) -> None:
        """Clear the security status a one-shot job left; never raises.

        If the warm reset fails the handle is dropped with SCARD_RESET_CARD, so
        the next job reconnects to a card whose status is cleared either way.
        """
        try:
            connection.reset()
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

    def _connect(self, insertion: int | None) -> CardConnection:
        current = self.insertion
        if insertion is not None and insertion != current:
            raise scard.CardGone("connect", 0x80100069)
        if self._connection is not None and self._connection.insertion == current:
            return self._connection
        self._disconnect()
        if self._context is None:
            self._context = scard.Context()
        card = self._context.connect(self.reader, shared=self.shared)
        self._card = card
        self._connection = CardConnection(self.reader, card, current, _observe)
        return self._connection

    def _disconnect(self, *, reset: bool = False) -> None:
        if self._card is not None:
            self._card.disconnect(reset)  # ends a transaction it holds, too
        self._card = None
        self._connection = None
        self._held = False

    def _drop_context(self) -> None:
        self._disconnect()
        if self._context is not None:
            self._context.release()
        self._context = None
