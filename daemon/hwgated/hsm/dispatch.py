"""Sending requests to a token's workers: least-loaded first, interactive before bulk.

``depth`` requests may be outstanding per worker so a worker never idles while
the next request crosses the pipe; callers beyond that wait here, in two FIFO
queues. Bulk work (stream slices) may fill only ``bulk_depth`` of a worker's
pipeline slots and is handed free slots only when no interactive call (a
unary sign, a lookup, key management) waits. So a unary call never queues
behind bulk work here, and in a worker it waits for at most the one slice
already running there: its wait is bounded by one slice whatever the bulk
load. (A slice takes tens of milliseconds, so the round trip a worker idles
between two bulk slices costs bulk throughput about one percent.)
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from typing import Any

from hwgated.hsm.channel import WorkerChannel, WorkerLostInFlight
from hwgated.hsm.errors import HsmWorkerLost, HwgateError

log = logging.getLogger("hwgated.hsm")

BULK_DEPTH = 1  # pipeline slots per worker that bulk work may hold
POISON_STRIKES = 2  # workers that died running one request: it is poison, not retried
MAX_ATTEMPTS = 3  # sends of one request, whatever killed its workers

_Waiters = collections.deque[asyncio.Future[WorkerChannel]]


def describe(op: str, args: Sequence[Any]) -> str:
    """A request for the log: the operation, its key and mechanism; bytes and lists
    (digests, data, peer keys) only by their length, so no data is ever logged.
    Built only when a worker died, never on the signing path."""
    shown = [
        f"<{len(arg)} {'bytes' if isinstance(arg, (bytes, bytearray)) else 'items'}>"
        if isinstance(arg, (bytes, bytearray, list, tuple))
        else str(arg)
        for arg in args
    ]
    return f"{op}({', '.join(shown)})"


class Dispatcher:
    """Hands worker capacity to callers; the workers themselves are the supervisor's."""

    def __init__(
        self,
        slots: Sequence[WorkerChannel | None],
        *,
        depth: int,
        refusal: Callable[[], HwgateError | None],
    ) -> None:
        self._slots = slots  # the supervisor's list, read live
        self._depth = max(1, depth)
        self._bulk_depth = min(BULK_DEPTH, self._depth)
        self._refusal = refusal
        self._rotor = 0
        self.waiters: _Waiters = collections.deque()
        self.bulk_waiters: _Waiters = collections.deque()

    async def call(
        self,
        op: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        budget: float,
        bulk: bool = False,
        retry: bool = False,
    ) -> Any:
        """Run ``op`` on a worker; ``budget`` seconds before its worker counts as hung.

        ``retry`` (idempotent requests only: the worker may have done the work
        before it died): a request in flight on a worker that dies is sent again,
        to another worker or the replacement, so a crash the caller did not cause
        costs it nothing. A request the dying worker was running counts a strike;
        at the second it is the crash's likely cause (a poison request) and fails
        as HSM_WORKER_LOST, logged with its operation, key and mechanism (never data).
        A request whose worker the pool killed for what it did (over its budget: the
        budget is spent; or a reply outside the schema: it may have compromised
        the module) is not resent. Requests that were only queued behind the running one
        never reached the module and are resent (at most ``MAX_ATTEMPTS`` sends).
        """
        strikes = attempts = 0
        while True:
            worker = await self._acquire(bulk)
            attempts += 1
            try:
                return await worker.submit(op, args, kwargs, budget)
            except WorkerLostInFlight as lost:
                if not retry or lost.blamed:
                    raise
                strikes += lost.ran
                if strikes >= POISON_STRIKES or attempts >= MAX_ATTEMPTS:
                    log.error(
                        "hsm request %s: %d workers died while it was in flight (running on %d);"
                        " failing it, not retrying",
                        describe(op, args),
                        attempts,
                        strikes,
                    )
                    raise HsmWorkerLost(
                        f"the request was in flight on {attempts} HSM workers that died"
                        " and is not retried again"
                    ) from None
                log.warning("hsm request %s: its worker died; sending it again", describe(op, args))
            finally:
                self._release(worker, bulk)

    def hand_out(self) -> None:
        """Give free capacity to waiting callers: interactive first, then bulk; FIFO each."""
        for queue, bulk in ((self.waiters, False), (self.bulk_waiters, True)):
            while queue:
                if queue[0].done():
                    queue.popleft()
                    continue
                worker = self._pick(bulk)
                if worker is None:
                    break
                self._take(worker, bulk)
                queue.popleft().set_result(worker)

    def fail_waiters(self, error: HwgateError) -> None:
        """Refuse every waiting caller (the pool went DOWN or closed)."""
        for queue in (self.waiters, self.bulk_waiters):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    async def _acquire(self, bulk: bool) -> WorkerChannel:
        queue = self.bulk_waiters if bulk else self.waiters
        # Bulk work also lets waiting interactive calls go first.
        if not queue and not (bulk and self.waiters):
            worker = self._pick(bulk)
            if worker is not None:
                self._take(worker, bulk)
                return worker
        refusal = self._refusal()
        if refusal is not None:
            raise refusal
        waiter: asyncio.Future[WorkerChannel] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result(), bulk)
            raise

    def _pick(self, bulk: bool) -> WorkerChannel | None:
        """The least-loaded worker with capacity (for bulk: with a free bulk slot too);
        ties rotate so every worker gets work."""
        best: WorkerChannel | None = None
        slots = self._slots
        count = len(slots)
        self._rotor = (self._rotor + 1) % count
        for offset in range(count):
            worker = slots[(self._rotor + offset) % count]
            if worker is None or not worker.alive or worker.load >= self._depth:
                continue
            if bulk and worker.bulk_load >= self._bulk_depth:
                continue
            if best is None or worker.load < best.load:
                best = worker
                if not worker.load:
                    break
        return best

    @staticmethod
    def _take(worker: WorkerChannel, bulk: bool) -> None:
        worker.load += 1
        if bulk:
            worker.bulk_load += 1

    def _release(self, worker: WorkerChannel, bulk: bool) -> None:
        worker.load -= 1
        if bulk:
            worker.bulk_load -= 1
        self.hand_out()
