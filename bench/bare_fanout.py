"""The bare-gRPC fan-out baseline: a ``grpc.aio`` server that only fans events out.

``python -m bench.bare_fanout unix:PATH READER`` serves one server-streaming
method under hwgated's name (``/hwgate.v1.CardService/WatchEvents``), so the
benchmark's subscribers run the very same client code against it. A thread
blocks in ``SCardGetStatusChange`` on READER, as hwgated's monitor does; each
insertion or removal becomes one pre-serialized ``WatchEventsResponse`` put in
every stream's ``asyncio.Queue``. Nothing else: no card identification, no
journal, no policy, no interceptors, no metrics. What it costs over a raw
watcher is what grpc.aio and the subscribers themselves cost for a fan-out on
this machine, the floor under hwgated's figure from the same run.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
from smartcard import scard

from hwgate.v1 import card_pb2

METHOD = "/hwgate.v1.CardService/WatchEvents"


def _event(sequence: int, kind: int, reader: str) -> bytes:
    return card_pb2.WatchEventsResponse(
        sequence=sequence, type=kind, reader=reader
    ).SerializeToString()


class Fanout:
    """Every stream's queue; ``publish`` is called on the loop."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.sequence = 0

    def publish(self, kind: int, reader: str) -> None:
        self.sequence += 1
        data = _event(self.sequence, kind, reader)
        for queue in self.queues:
            queue.put_nowait(data)

    async def watch(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.add(queue)
        try:
            yield _event(self.sequence, card_pb2.EVENT_TYPE_SNAPSHOT_COMPLETE, "")
            while True:
                yield await queue.get()
        finally:
            self.queues.discard(queue)


def monitor(
    reader: str, loop: asyncio.AbstractEventLoop, fanout: Fanout, stop: threading.Event
) -> None:
    """SCardGetStatusChange on *reader*; presence changes go to the loop."""
    _, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    state, present = scard.SCARD_STATE_UNAWARE, None
    while not stop.is_set():
        rv, states = scard.SCardGetStatusChange(ctx, 500, [(reader, state)])
        if rv != 0:
            continue
        _, event_state, _ = states[0]
        state = event_state & ~scard.SCARD_STATE_CHANGED
        is_present = bool(event_state & scard.SCARD_STATE_PRESENT)
        if present is not None and is_present != present:
            kind = (
                card_pb2.EVENT_TYPE_CARD_INSERTED
                if is_present
                else card_pb2.EVENT_TYPE_CARD_REMOVED
            )
            loop.call_soon_threadsafe(fanout.publish, kind, reader)
        present = is_present
    scard.SCardReleaseContext(ctx)


async def serve(target: str, reader: str) -> None:
    fanout = Fanout()
    handler = grpc.method_handlers_generic_handler(
        "hwgate.v1.CardService",
        {"WatchEvents": grpc.unary_stream_rpc_method_handler(fanout.watch)},  # bytes in, bytes out
    )
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 4096)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(target)
    await server.start()
    loop = asyncio.get_running_loop()
    stopping = threading.Event()
    thread = threading.Thread(target=monitor, args=(reader, loop, fanout, stopping), daemon=True)
    thread.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    stopping.set()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
