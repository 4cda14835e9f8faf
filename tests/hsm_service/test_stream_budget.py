"""SignStream's per-stream digest budget (issue 15 item 3), in-process: the pump
stops reading a client that sends batches faster than they are answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hwgate.v1 import hsm_pb2
from hwgated.api import hsm_stream
from hwgated.api.hsm_stream import _Budget, _End, _pump


def test_the_pump_holds_a_stream_to_its_digest_budget() -> None:
    pulled = 0

    async def batches() -> AsyncIterator[hsm_pb2.SignStreamRequest]:
        nonlocal pulled
        while True:
            pulled += 1
            yield hsm_pb2.SignStreamRequest(
                request_id=pulled, digest_batch=hsm_pb2.DigestBatch(digests=[bytes(32)] * 1024)
            )

    async def scenario() -> tuple[int, int, int]:
        budget = _Budget(hsm_stream.MAX_STREAM_DIGESTS)
        queue: asyncio.Queue[hsm_pb2.SignStreamRequest | _End] = asyncio.Queue(hsm_stream.QUEUE_MAX)
        pump = asyncio.create_task(_pump(batches(), queue, budget))
        for _ in range(50):  # let the pump run as far as it can
            await asyncio.sleep(0)
        held = queue.qsize()
        budget.give(budget.weight(await queue.get()))  # one answered: room for one more
        for _ in range(50):
            await asyncio.sleep(0)
        after = queue.qsize()
        pump.cancel()
        return held, after, pulled

    held, after, total = asyncio.run(scenario())
    assert held == hsm_stream.MAX_STREAM_DIGESTS // 1024  # not QUEUE_MAX batches
    assert after == held  # exactly one more was read
    assert total <= held + 2  # the client was not read ahead of the budget


def test_a_broken_request_stream_ends_with_its_error() -> None:
    async def broken() -> AsyncIterator[hsm_pb2.SignStreamRequest]:
        yield hsm_pb2.SignStreamRequest(request_id=1, digest=bytes(32))
        raise ValueError("undecodable")

    async def scenario() -> list[object]:
        queue: asyncio.Queue[hsm_pb2.SignStreamRequest | _End] = asyncio.Queue()
        await _pump(broken(), queue, _Budget(hsm_stream.MAX_STREAM_DIGESTS))
        return [queue.get_nowait() for _ in range(queue.qsize())]

    first, end = asyncio.run(scenario())
    assert isinstance(first, hsm_pb2.SignStreamRequest) and isinstance(end, _End)
    assert isinstance(end.error, ValueError)
