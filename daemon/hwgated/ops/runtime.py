"""Operations wired to the daemon's subsystems: metrics taps, STATUS=, the watchdog.

Everything here observes; nothing changes how a request is served. The card
events are counted by a private subscription to the event hub (the same feed
WatchEvents clients get), APDUs through the PC/SC worker's hook, and the
gauges and the STATUS= line are refreshed on the loop every ``TICK`` seconds
and whenever the card or HSM health changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from hwgated.errors import SubscriberTooSlow
from hwgated.hsm import HsmPool, PoolState
from hwgated.ops.metrics import Metrics
from hwgated.ops.notify import Notifier, watchdog_interval
from hwgated.ops.status import summary
from hwgated.ops.watchdog import Watchdog
from hwgated.pcsc import monitor as pcsc_monitor
from hwgated.pcsc import worker as pcsc_worker
from hwgated.pcsc.events import EventFilter, EventType, ReaderState
from hwgated.pcsc.manager import CardManager, Subscription

log = logging.getLogger(__name__)

TICK = 1.0
# The monitor wakes at least every PROBE_INTERVAL; three missed wake-ups mean it is stuck.
MONITOR_STALE = 3 * pcsc_monitor.PROBE_INTERVAL


class Operations:
    """The daemon's operational side; ``start`` after the listeners, ``stop`` first."""

    def __init__(
        self,
        cards: CardManager,
        pools: Mapping[str, HsmPool],
        metrics: Metrics,
        notifier: Notifier,
    ) -> None:
        self.cards = cards
        self.pools = pools
        self.metrics = metrics
        self.notifier = notifier
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        self._seen_service_up = False
        self._known_pids: dict[str, set[int]] = {name: set() for name in pools}

    # --- lifecycle -------------------------------------------------------------------

    def attach(self) -> None:
        """Before the card manager starts: count its events from the first one on."""
        pcsc_worker.apdu_observer = self.metrics.observe_apdu
        _, self._subscription = self.cards.subscribe(0, EventFilter())

    def start(self, metrics_address: str | None) -> None:
        if metrics_address is not None:
            self.metrics.serve(metrics_address)
        self._spawn(self._count_events(), "ops-events")
        self._spawn(self._tick(), "ops-tick")
        interval = watchdog_interval()
        if interval is not None and self.notifier.enabled:
            watchdog = Watchdog(self.notifier, interval, [self.monitor_problem, self.hsm_problem])
            self._spawn(watchdog.run(), "ops-watchdog")
        self.refresh()

    def _spawn(self, coro: object, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))  # type: ignore[arg-type]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._subscription is not None:
            self._subscription.close()
        if pcsc_worker.apdu_observer == self.metrics.observe_apdu:
            pcsc_worker.apdu_observer = None
        self.metrics.close()

    # --- watchdog probes -------------------------------------------------------------

    def monitor_problem(self) -> str | None:
        monitor = self.cards.monitor
        if monitor is None or not monitor.alive:
            return "the PC/SC monitor thread is not running"
        stale = monitor.stale_for()
        if stale > MONITOR_STALE:
            return f"the PC/SC monitor thread has not woken for {stale:.1f}s"
        return None

    def hsm_problem(self) -> str | None:
        stuck = [
            name
            for name, pool in self.pools.items()
            if pool.state is not PoolState.CLOSED and not pool.supervising
        ]
        return f"HSM pool supervisor stopped: {', '.join(stuck)}" if stuck else None

    # --- metrics and status ---------------------------------------------------------

    async def _count_events(self) -> None:
        while True:
            subscription = self._subscription
            if subscription is None:
                return
            try:
                event = await subscription.get()
            except SubscriberTooSlow:
                subscription.close()
                _, self._subscription = self.cards.subscribe(
                    subscription.last_sequence, EventFilter()
                )
                continue
            if event.snapshot:
                continue
            self.metrics.card_events.labels(event.type.value).inc()
            if event.type is EventType.SERVICE_UP:
                if self._seen_service_up:
                    self.metrics.pcscd_reconnects.inc()
                self._seen_service_up = True
            self.refresh()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.refresh()

    def refresh(self) -> None:
        """Gauges and STATUS= from the current state (on the loop)."""
        m = self.metrics
        readers = self.cards.readers() if self.cards.available else []
        m.pcscd_up.set(1 if self.cards.available else 0)
        m.readers.set(len(readers))
        m.cards.set(sum(1 for slot in readers if slot.state is ReaderState.PRESENT))
        depths = self.cards.hub.queue_depths
        m.event_queue_max.set(max(depths, default=0))
        m.event_queue_total.set(sum(depths))
        for name, pool in self.pools.items():
            pids = set(pool.worker_pids())
            m.hsm_workers.labels(name).set(len(pids))
            m.hsm_up.labels(name).set(1 if pool.healthy else 0)
            known = self._known_pids[name]
            if known:
                fresh = len(pids - known)
                if fresh:
                    m.worker_restarts.labels(name).inc(fresh)
            self._known_pids[name] = known | pids
        self.notifier.status(summary(self.cards, self.pools))
