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
from collections.abc import Callable, Sequence
from typing import Any

from hwgated.hsm.channel import WorkerChannel
from hwgated.hsm.errors import HsmError

BULK_DEPTH = 1  # pipeline slots per worker that bulk work may hold

_Waiters = collections.deque[asyncio.Future[WorkerChannel]]


class Dispatcher:
    """Hands worker capacity to callers; the workers themselves are the supervisor's."""

    def __init__(
        self,
        slots: Sequence[WorkerChannel | None],
        *,
        depth: int,
        refusal: Callable[[], HsmError | None],
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
    ) -> Any:
        """Run ``op`` on a worker; ``budget`` seconds before its worker counts as hung."""
        worker = await self._acquire(bulk)
        try:
            return await worker.submit(op, args, kwargs, budget)
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

    def fail_waiters(self, error: HsmError) -> None:
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
