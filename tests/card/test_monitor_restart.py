"""The reader monitor crashing: an explicit restart, no leaked worker or session.

In-process against the real pcscd of the test bed; the crash is injected into
the monitor's comparison step (the only fake here: a bug cannot be provoked on
purpose otherwise). Before the fix the monitor restarted with nothing known and
reported every reader as added again, and the manager overwrote the slots:
each restart leaked a worker thread per reader and orphaned the sessions.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from hwgated.config import PcscConfig
from hwgated.pcsc.events import CardEvent, EventFilter, EventType
from hwgated.pcsc.manager import CardManager
from hwgated.pcsc.monitor import ReaderMonitor

pytestmark = [pytest.mark.testbed]

R0 = "Virtual PCD 00 00"


def reader_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("reader:") and t.is_alive())


async def next_event(sub: Any, kind: EventType, reader: str = "", timeout: float = 30) -> CardEvent:
    async with asyncio.timeout(timeout):
        while True:
            event: CardEvent = await sub.get()
            if event.type is kind and (not reader or event.reader == reader):
                return event


def test_monitor_crash_is_an_explicit_restart(
    testbed: object, cards: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = threading.Event()
    compare = ReaderMonitor._compare

    def crashing_compare(self: ReaderMonitor, *args: Any) -> None:
        if crash.is_set():
            crash.clear()
            raise RuntimeError("injected monitor bug")
        compare(self, *args)

    monkeypatch.setattr(ReaderMonitor, "_compare", crashing_compare)

    async def main() -> None:
        manager = CardManager(PcscConfig())
        _, sub = manager.subscribe(0, EventFilter())
        await manager.start()
        try:
            await manager.wait_first_attempt(10)
            await asyncio.to_thread(cards.insert, 0, "alice")  # type: ignore[attr-defined]
            await next_event(sub, EventType.CARD_INSERTED, R0)
            session = await manager.open_session(R0, None, owner="t", timeout=10)
            threads_before = reader_threads()
            readers_before = [slot.name for slot in manager.readers()]

            crash.set()  # the next observation crashes the monitor
            await asyncio.to_thread(cards.remove, 0)  # type: ignore[attr-defined]
            await next_event(sub, EventType.SERVICE_DOWN)
            assert session.closed and manager.sessions() == []
            await next_event(sub, EventType.SERVICE_UP)
            await next_event(sub, EventType.READER_ADDED, R0)
            while sorted(s.name for s in manager.readers()) != sorted(readers_before):
                await next_event(sub, EventType.READER_ADDED)
            # Old workers stop on their own threads: wait for them with a deadline.
            async with asyncio.timeout(15):
                while reader_threads() > threads_before:
                    await asyncio.sleep(0.05)
            assert reader_threads() == len(readers_before)
            # The reader is usable at once after the restart.
            await asyncio.to_thread(cards.insert, 0, "alice")  # type: ignore[attr-defined]
            await next_event(sub, EventType.CARD_INSERTED, R0)
            again = await manager.open_session(R0, None, owner="t", timeout=10)
            await manager.close_session(again.id, "t")
        finally:
            sub.close()
            await manager.stop()

    asyncio.run(main())
