"""The reader monitor: one thread blocked in SCardGetStatusChange, nothing polled.

It watches every reader plus the ``\\\\?PnP?\\Notification`` pseudo-reader (reader
hotplug) on its own PC/SC context and turns state changes into calls on a
:class:`MonitorSink`. ``SCardCancel`` wakes it to stop. When pcscd goes away the
blocked call fails (SCARD_F_COMM_ERROR, then SCARD_E_NO_SERVICE); the context is
then dead for good even though SCardIsValidContext would still say SUCCESS, so
the monitor reports the service down and builds a new context with capped
backoff until pcscd answers again.

Liveness: the wait is not INFINITE but ``PROBE_INTERVAL`` long, and every
return (a change, or SCARD_E_TIMEOUT) refreshes ``heartbeat``. A finite timeout
was chosen over waking the thread with SCardCancel from outside: it needs no
second thread or lock, it proves the whole round trip (our thread, the pyscard
call, pcscd's answer) instead of only that a cancel was delivered, and one
cheap status round trip a second costs nothing measurable. State is passed back
in each call, so no change between two calls is lost. The systemd watchdog
withholds its ping when the heartbeat goes stale (see hwgated.ops.watchdog).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from hwgated.patterns import any_match
from hwgated.pcsc import scard

log = logging.getLogger(__name__)

BACKOFF_START = 0.05
BACKOFF_CAP = 1.0
PROBE_INTERVAL = 1.0  # seconds: longest wait in SCardGetStatusChange before a heartbeat


class MonitorSink(Protocol):
    """Receives the monitor's observations, on the monitor thread, in order."""

    def service_up(self) -> None: ...
    def service_down(self, reason: str) -> None: ...
    def reader_added(self, status: scard.ReaderStatus) -> None: ...
    def reader_removed(self, name: str) -> None: ...
    def card_inserted(self, status: scard.ReaderStatus) -> None: ...
    def card_removed(self, name: str) -> None: ...


class ReaderMonitor:
    """Owns the monitor thread; ``start``/``stop`` from any thread."""

    def __init__(self, sink: MonitorSink, patterns: Sequence[str] = ("*",)) -> None:
        self._sink = sink
        self._patterns = tuple(patterns)
        self._stopping = threading.Event()
        self._context: scard.Context | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="pcsc-monitor", daemon=True)
        self.heartbeat = time.monotonic()  # last time the thread was seen working
        self.service_ok = False
        self._refusal_logged = False  # pcscd's polkit refusal is logged once
        self._wedged = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            if self._context is not None:
                self._context.cancel()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stale_for(self, now: float | None = None) -> float:
        """Seconds since the thread last proved it runs (0 while fresh)."""
        return max(0.0, (time.monotonic() if now is None else now) - self.heartbeat)

    def wedge(self) -> None:
        """Test hook: block the thread at its next wake-up until stop (watchdog tests)."""
        log.warning("reader monitor: wedging on request (test hook)")
        self._wedged.set()

    def _beat(self) -> None:
        if self._wedged.is_set():
            self._stopping.wait()  # a deliberately hung thread: no more heartbeats
            return
        self.heartbeat = time.monotonic()

    def _wanted(self, name: str) -> bool:
        return any_match(name, self._patterns)

    def _run(self) -> None:
        backoff = BACKOFF_START
        while not self._stopping.is_set():
            self._beat()
            context: scard.Context | None = None
            try:
                context = scard.Context()
                with self._lock:
                    self._context = context
                if self._stopping.is_set():
                    return
                backoff = BACKOFF_START
                self._watch(context)
            except scard.PcscError as exc:
                if isinstance(exc, scard.AccessRefused) and not self._refusal_logged:
                    # Not a pcscd that is down: one that says no, until an
                    # administrator acts. Say so once, in words that lead there.
                    self._refusal_logged = True
                    log.error(
                        "pcscd refused this process (%s): pcsc-lite 2.x asks polkit "
                        "(org.debian.pcsc-lite.access_pcsc); install the polkit rule "
                        "50-hwgate-pcscd.rules for the service user (docs/install.md)",
                        exc,
                    )
                if self.service_ok:
                    log.warning("pcscd unavailable: %s", exc)
                    self.service_ok = False
                    self._sink.service_down(str(exc))
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)
            except Exception:  # a bug must not kill event delivery for the daemon's life
                log.exception("reader monitor failed; restarting it")
                # The restart starts from nothing known: say so, so the manager drops
                # every reader (ending sessions, failing waiters) and re-adds them,
                # rather than getting "reader added" again for readers it still has.
                if self.service_ok:
                    self.service_ok = False
                    self._sink.service_down("reader monitor restarted after an error")
                self._stopping.wait(BACKOFF_CAP)
            finally:
                with self._lock:
                    self._context = None
                if context is not None:
                    context.release()

    def _watch(self, context: scard.Context) -> None:
        """Report changes until stopped; raises PcscError when pcscd goes away."""
        known: dict[str, scard.ReaderStatus] = {}
        pnp_state = scard.STATE_UNAWARE
        readers = self._list(context)
        if not self.service_ok:
            self.service_ok = True
            log.info("pcscd available")
            self._sink.service_up()
        # FACTS (pcsc-lite 2.3.3, Debian 13, measured in its container; the card and
        # PIV suites pass there unchanged): reader names are as in 1.9.9 ("Virtual
        # PCD 00 00"); the PnP pseudo-reader still answers with the reader count in
        # its upper 16 bits (0x20000 for vpcd's two) and STATE_CHANGED when readers
        # come or go; each reader's insert/remove counter is still in the upper 16
        # bits; a killed pcscd still fails the blocked call, then NO_SERVICE, and a
        # new context works once it is back. What 2.x adds is polkit: see
        # scard.AccessRefused.
        while not self._stopping.is_set():
            query = [(scard.PNP_READER, pnp_state)]
            query += [(name, self._current(known.get(name))) for name in readers]
            self._beat()
            try:
                result = context.get_status_change(query, int(PROBE_INTERVAL * 1000))
            except (scard.Cancelled, scard.Timeout):
                continue  # stop(), or the liveness timeout; the loop condition decides
            except scard.ReaderGone:
                readers = self._relist(context, known)
                continue
            self._beat()
            pnp, statuses = result[0], result[1:]
            for status in statuses:
                self._compare(known.get(status.name), status, known)
            if pnp.event_state & scard.STATE_CHANGED:
                pnp_state = pnp.event_state & ~scard.STATE_CHANGED
                readers = self._relist(context, known)

    def _list(self, context: scard.Context) -> list[str]:
        return [name for name in context.list_readers() if self._wanted(name)]

    def _relist(self, context: scard.Context, known: dict[str, scard.ReaderStatus]) -> list[str]:
        readers = self._list(context)
        for name in sorted(set(known) - set(readers)):
            status = known.pop(name)
            if status.present:
                self._sink.card_removed(name)
            self._sink.reader_removed(name)
        return readers

    @staticmethod
    def _current(status: scard.ReaderStatus | None) -> int:
        if status is None:
            return scard.STATE_UNAWARE
        return status.event_state & ~scard.STATE_CHANGED

    def _compare(
        self,
        old: scard.ReaderStatus | None,
        new: scard.ReaderStatus,
        known: dict[str, scard.ReaderStatus],
    ) -> None:
        known[new.name] = new
        if old is None:
            self._sink.reader_added(new)
            return
        # pcsc-lite counts insertions/removals in the upper 16 bits: a card swapped
        # between two wake-ups shows as present → present with a new count.
        swapped = new.event_count != old.event_count
        if old.present and (not new.present or swapped):
            self._sink.card_removed(new.name)
        if new.present and (not old.present or swapped):
            self._sink.card_inserted(new)
