"""The client side of the event benchmarks: a raw PC/SC watcher and subscriber processes.

``RawWatcher`` is the +0 of every event latency: it blocks in
``SCardGetStatusChange`` on the reader as hwgated's monitor does and timestamps
each insertion and removal. ``subscriber_process`` is one load-generator process
holding many WatchEvents streams (grpc.aio, one channel), counting what arrives
in shared counters and returning the insertion receive times and its CPU time.
Shared by bench_card.py and bench_fanout.py, with the daemon config they run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from smartcard import scard

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgate_testbed.paths import vpcd_reader

R0 = vpcd_reader(0)


class RawWatcher(threading.Thread):
    """SCardGetStatusChange on R0: the time of every insertion and removal."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        _, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        self.inserts: list[float] = []
        self.removes: list[float] = []
        self.stop = False

    def run(self) -> None:
        state, present = scard.SCARD_STATE_UNAWARE, None
        while not self.stop:
            rv, states = scard.SCardGetStatusChange(self.ctx, 500, [(R0, state)])
            if rv != 0:
                continue
            _, event_state, _ = states[0]
            now = time.monotonic()
            state = event_state & ~scard.SCARD_STATE_CHANGED
            is_present = bool(event_state & scard.SCARD_STATE_PRESENT)
            if present is not None and is_present != present:
                (self.inserts if is_present else self.removes).append(now)
            present = is_present


def subscriber_process(target: str, count: int, shared: dict[str, Any], out: Any) -> None:
    """*count* WatchEvents streams on one channel; insert receive times, CPU spent."""

    async def run() -> dict[str, Any]:
        channel = grpc.aio.insecure_channel(target)
        stub = card_pb2_grpc.CardServiceStub(channel)
        seen: list[list[float]] = [[] for _ in range(count)]
        synced = [asyncio.Event() for _ in range(count)]
        inserted, removed = shared["inserted"], shared["removed"]

        async def subscribe(i: int) -> None:
            request = card_pb2.WatchEventsRequest(reader_patterns=[R0])
            async for event in stub.WatchEvents(request):
                if event.type == card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE:
                    synced[i].set()
                elif event.type == card_pb2.EVENT_TYPE_CARD_INSERTED:
                    seen[i].append(time.monotonic())
                    with inserted.get_lock():
                        inserted.value += 1
                elif event.type == card_pb2.EVENT_TYPE_CARD_REMOVED:
                    with removed.get_lock():
                        removed.value += 1

        tasks = [asyncio.create_task(subscribe(i)) for i in range(count)]
        await asyncio.gather(*(e.wait() for e in synced))
        shared["ready"].release()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, shared["go"].wait)
        cpu0 = time.process_time()
        await loop.run_in_executor(None, shared["stop"].wait)
        cpu = time.process_time() - cpu0
        for task in tasks:
            task.cancel()
        await channel.close()
        return {"seen": seen, "cpu_s": cpu}

    out.send(asyncio.run(run()))


class SubscriberProcesses:
    """*count* WatchEvents streams over *procs* spawned ``subscriber_process`` es.

    ``shared`` holds what they share: ``ready`` (released once per process when all
    its streams have their snapshot), ``go`` (start of the measured phase), ``stop``,
    and the ``inserted`` / ``removed`` counters.
    """

    def __init__(self, target: str, count: int, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs = max(1, min(procs, count))
        self.shared: dict[str, Any] = {
            "ready": ctx.Semaphore(0), "go": ctx.Event(), "stop": ctx.Event(),
            "inserted": ctx.Value("i", 0), "removed": ctx.Value("i", 0),
        }  # fmt: skip
        self._pipes: list[Any] = []
        self._workers: list[Any] = []
        for p in range(self.procs):
            share = count // self.procs + (1 if p < count % self.procs else 0)
            parent, child = ctx.Pipe()
            worker = ctx.Process(
                target=subscriber_process, args=(target, share, self.shared, child)
            )
            worker.start()
            self._pipes.append(parent)
            self._workers.append(worker)

    def wait_ready(self, timeout: float = 120) -> bool:
        """Until every process has every stream subscribed (False: one did not in time)."""
        return all(self.shared["ready"].acquire(timeout=timeout) for _ in range(self.procs))

    def finish(self) -> list[dict[str, Any]]:
        """Stop the processes; each one's insertion receive times and CPU seconds."""
        self.shared["stop"].set()
        results = [pipe.recv() for pipe in self._pipes]
        for worker in self._workers:
            worker.join(30)
        return results


def daemon_config(work: Path, sock: Path, max_streams: int) -> Path:
    """hwgated's config for the event benchmarks: admin on *sock*, R0 only, queue 64."""
    config = work / "hwgated.toml"
    config.write_text(
        f'[daemon]\nlog_level = "warning"\n[[listen]]\nunix = "{sock}"\nrole = "admin"\n'
        f'[pcsc]\nreaders = ["{R0}"]\nsubscriber_queue = 64\n'
        '[policy.roles.admin]\nallow = ["*"]\n[[policy.readers]]\npattern = "*"\n'
        'roles = ["admin"]\n'
        # the subscribers share a few connections: lift the per-connection stream cap
        f"[limits]\nmax_streams_per_connection = {max_streams}\n"
    )
    return config
