"""Bulk work cannot starve interactive calls (issue 15 item 3), at the pool level.

Counted in completion order, not time: a unary sign that arrives behind a deep
queue of 64-item slices finishes after at most the slices already in the
worker's pipe (the pool's ``bulk_depth``), and bulk work still all completes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

from hsm_support import LoopThread, eventually

from hwgated.hsm import HsmPool, SignAlgorithm

DIGESTS = [hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(64)]
ECDSA = SignAlgorithm.ECDSA_SHA256


def test_a_unary_sign_overtakes_queued_bulk_slices(
    own_pool: Callable[..., HsmPool], loop_thread: LoopThread
) -> None:
    pool = own_pool(workers=1, pipeline_depth=4)

    async def scenario() -> tuple[int, int]:
        finished: list[str] = []

        async def bulk(i: int) -> None:
            await pool.sign_many("ec-p256", ECDSA, DIGESTS)
            finished.append(f"bulk{i}")

        tasks = [asyncio.create_task(bulk(i)) for i in range(24)]
        # The worker is busy with bulk work and more waits in the pool's queue.
        await eventually(lambda: pool._bulk_waiters, 10, "bulk work to queue up")
        already = len(finished)
        await pool.sign("ec-p256", ECDSA, DIGESTS[0])
        overtaken_by = len(finished) - already
        await asyncio.gather(*tasks)
        return overtaken_by, len(finished)

    overtaken_by, total = loop_thread.run(scenario())
    assert total == 24  # bulk work is delayed, never dropped
    # At most the slice already in the worker's pipe (BULK_DEPTH = 1).
    assert overtaken_by <= 1, f"the unary sign waited for {overtaken_by} bulk slices"
