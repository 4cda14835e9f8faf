"""Many WatchEvents subscribers in one grpc.aio client, on a thread of its own.

A test that needs hundreds of subscribers cannot give each a thread (as
``EventCollector`` does); these share one event loop and a few connections.
Waits are on what the subscribers received, with deadlines scaled for load.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import grpc

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed.timing import scaled

Event = card_pb2.WatchEventsResponse


class Subscribers:
    """*count* WatchEvents streams over *connections* connections to *target*."""

    def __init__(
        self,
        target: str,
        count: int,
        request: card_pb2.WatchEventsRequest,
        connections: int = 4,
        timeout: float = 30.0,
    ) -> None:
        self.live: list[list[Event]] = [[] for _ in range(count)]  # events after the snapshot
        self.errors: list[grpc.aio.AioRpcError | None] = [None] * count
        self._synced = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete,
            args=(self._run(target, count, request, connections),),
            daemon=True,
        )
        self._thread.start()
        self.wait_until(lambda: self._synced == count, timeout, "every snapshot")

    async def _run(
        self, target: str, count: int, request: card_pb2.WatchEventsRequest, connections: int
    ) -> None:
        self._stop = asyncio.Event()
        # A local subchannel pool per channel: each one is its own connection.
        channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(connections)
        ]
        stubs = [card_pb2_grpc.CardServiceStub(c) for c in channels]
        tasks = [
            asyncio.create_task(self._subscribe(i, stubs[i % connections], request))
            for i in range(count)
        ]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()

    async def _subscribe(
        self, i: int, stub: card_pb2_grpc.CardServiceStub, request: card_pb2.WatchEventsRequest
    ) -> None:
        synced = False
        try:
            async for event in stub.WatchEvents(request):
                with self._changed:
                    if synced:
                        self.live[i].append(event)
                    elif event.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE:
                        synced = True
                        self._synced += 1
                    self._changed.notify_all()
        except grpc.aio.AioRpcError as err:
            with self._changed:
                self.errors[i] = err
                self._changed.notify_all()

    def wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + scaled(timeout)
        with self._changed:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"not {what} within {scaled(timeout)}s")
                self._changed.wait(min(remaining, 0.5))

    def wait_for_total(self, kind: int, total: int, timeout: float = 30.0) -> None:
        """Until the subscribers together hold *total* events of *kind*."""
        self.wait_until(
            lambda: sum(1 for ev in self.live for e in ev if e.type == kind) >= total,
            timeout,
            f"{total} {card_pb2.EventType.Name(kind)} events",
        )

    def close(self) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(scaled(30))
        self._loop.close()
