"""ReaderAccess: FIFO, deadlines, close, and cancellation at every point.

Pure asyncio, no test bed. The property test drives random mixes of acquire,
cancel, deadline and close and checks the one invariant that matters: the lock
ends free when every holder released, whatever was cancelled when.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgated import errors
from hwgated.pcsc.access import ReaderAccess


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_fifo_order_and_release_frees() -> None:
    async def main() -> list[int]:
        access = ReaderAccess("r")
        order: list[int] = []
        await access.acquire()

        async def waiter(n: int) -> None:
            await access.acquire()
            order.append(n)
            access.release()

        tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
        await asyncio.sleep(0)  # let them queue (no state waited on: they only enqueue)
        assert access.queued == 5
        access.release()
        await asyncio.gather(*tasks)
        assert not access.held
        return order

    assert run(main()) == [0, 1, 2, 3, 4]


def test_deadline_gives_reader_busy_and_leaves_lock_consistent() -> None:
    async def main() -> None:
        access = ReaderAccess("r")
        await access.acquire()
        loop = asyncio.get_running_loop()
        with pytest.raises(errors.ReaderBusy):
            await access.acquire(loop.time() + 0.01)
        assert access.queued == 0
        access.release()
        assert not access.held

    run(main())


def test_granted_then_cancelled_waiter_passes_the_reader_on() -> None:
    """The race of issue #25: the lock is handed to a waiter whose task is
    cancelled before it runs. It must pass the reader on, not keep it."""

    async def main() -> None:
        access = ReaderAccess("r")
        await access.acquire()
        first = asyncio.create_task(access.acquire())
        second = asyncio.create_task(access.acquire())
        await asyncio.sleep(0)
        access.release()  # hands the reader to `first`...
        first.cancel()  # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)  # `second` got it
        assert access.held
        access.release()
        assert not access.held

    run(main())


def test_close_fails_waiters_at_once_and_later_acquires() -> None:
    async def main() -> None:
        access = ReaderAccess("r")
        await access.acquire()
        waiters = [asyncio.create_task(access.acquire()) for _ in range(3)]
        await asyncio.sleep(0)
        access.close(lambda: errors.PcscUnavailable("gone"))
        for waiter in waiters:
            with pytest.raises(errors.PcscUnavailable):
                await waiter
        with pytest.raises(errors.PcscUnavailable):
            await access.acquire()
        access.release()  # the holder's own release still works
        assert not access.held

    run(main())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["cancel", "deadline", "keep"]), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
def test_lock_ends_free_whatever_is_cancelled(
    plan: list[tuple[str, int]], close_midway: bool
) -> None:
    async def main() -> None:
        access = ReaderAccess("r")
        loop = asyncio.get_running_loop()
        holders = 0

        async def client(mode: str, hold_ticks: int) -> None:
            nonlocal holders
            deadline = loop.time() + 0.001 * hold_ticks if mode == "deadline" else None
            await access.acquire(deadline)
            holders += 1
            assert holders == 1, "two holders at once"
            try:
                for _ in range(hold_ticks):
                    await asyncio.sleep(0)
            finally:
                holders -= 1
                access.release()

        tasks = [asyncio.create_task(client(mode, ticks)) for mode, ticks in plan]
        for index, (mode, ticks) in enumerate(plan):
            for _ in range(ticks):
                await asyncio.sleep(0)
            if mode == "cancel":
                tasks[index].cancel()
            if close_midway and index == len(plan) // 2:
                access.close(lambda: errors.ReaderNotFound("removed"))
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not access.held
        assert access.queued == 0

    run(main())
