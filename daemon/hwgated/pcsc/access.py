"""Exclusive, FIFO, cancel-safe access to one reader.

``asyncio.Lock`` leaves two holes that real clients hit: a caller cancelled at
the moment the lock is handed to it (or whose ``wait_for`` deadline fires then)
can end up neither holding nor having passed on the lock, and a reader that
vanishes leaves its waiters queued until their own deadlines. This lock hands
ownership over explicitly: a waiter that is granted the reader and then
cancelled passes it on before it unwinds, and :meth:`ReaderAccess.close` fails
every waiter at once with the reason the reader went away.

Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from hwgated import errors


class ReaderAccess:
    """Who may talk to one reader's card now; everyone else queues in order."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed: Callable[[], errors.GatewayError] | None = None

    @property
    def held(self) -> bool:
        return self._held

    @property
    def queued(self) -> int:
        """Callers waiting for the reader (for tests and metrics)."""
        return sum(1 for w in self._waiters if not w.done())

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def acquire(self, deadline: float | None = None) -> None:
        """Return once the caller holds the reader; it must then :meth:`release` it.

        *deadline* is in loop time. Raises READER_BUSY past the deadline, the
        close reason if the reader goes away, CancelledError if cancelled; in each
        of those cases the caller does not hold the reader.
        """
        if self._closed is not None:
            raise self._closed()
        if not self._held and not self._waiters:
            self._held = True  # the common case: no task, no timer
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(granted)
        try:
            async with asyncio.timeout_at(deadline):
                await granted
        except BaseException as exc:
            # Ownership may have been handed over just before the cancel or the
            # deadline reached this task: pass it on rather than keep it.
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self.release()
            if isinstance(exc, TimeoutError):
                raise errors.ReaderBusy(
                    f"reader {self.reader!r} stayed busy past the deadline", reader=self.reader
                ) from None
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(granted)

    def release(self) -> None:
        """Hand the reader to the next live waiter, or mark it free."""
        assert self._held, f"release of reader {self.reader!r} that is not held"
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # ownership moves; _held stays True
                return
        self._held = False

    def close(self, reason: Callable[[], errors.GatewayError]) -> None:
        """The reader is gone: fail every waiter now, and every later acquire,
        each with its own error made by *reason*."""
        self._closed = reason
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(reason())
