"""The parent's end of one worker: an asyncio protocol on the worker's socket.

Replies are read by the event loop as they arrive (``data_received``) and
matched to futures by request id, so the loop never blocks on a worker, and a
caller costs one write and one callback, no thread hop. The worker serves
requests in order, which is what makes hang detection simple: the oldest
pending request is the one running, and it has been running since the previous
reply arrived (or since it was sent to an idle worker).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing.process
import time
from dataclasses import dataclass
from typing import Any, cast

from hwgated.hsm.errors import HsmUnavailable, HsmWorkerLost, HwgateError, error_from_wire
from hwgated.hsm.wire import STARTUP_ID, FrameDecoder, encode

log = logging.getLogger("hwgated.hsm")


class WorkerLostInFlight(HsmWorkerLost):
    """HSM_WORKER_LOST for one request, with what the pool needs to decide on a retry.

    ``ran``: the request was the one the worker was running when it died (a worker
    serves its pipe in order, so only the oldest pending request can have caused
    the death; the ones behind it never reached the module). ``blamed``: the pool
    killed the worker for what that running request did (it ran over its budget,
    or the worker answered with a frame outside the schema): it is not resent.
    """

    def __init__(self, message: str, *, ran: bool, blamed: bool = False) -> None:
        super().__init__(message)
        self.ran = ran
        self.blamed = blamed


@dataclass
class _Pending:
    future: asyncio.Future[Any]
    budget: float  # seconds this request may run before the worker is declared hung


class WorkerChannel(asyncio.Protocol):
    """Requests to, replies from, and the life of one worker process."""

    def __init__(self, name: str, process: multiprocessing.process.BaseProcess) -> None:
        self.name = name
        self.process = process
        self.load = 0  # requests reserved by the pool (sent or about to be)
        self.bulk_load = 0  # of which bulk work (the pool caps it below the pipeline depth)
        self.started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.exited: asyncio.Future[int | None] = loop.create_future()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._head_since = 0.0
        self._lost_reason: str | None = None
        loop.add_reader(process.sentinel, self._on_exit)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self._lost_reason is None

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's implement asyncio.Transport without subclassing it).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Everything a worker sends is untrusted data (vendor code runs there): a frame
        # outside the schema, or a reply of the wrong shape, means the worker is lost.
        try:
            messages = self._decoder.feed(data)
            for message in messages:
                request_id, ok, payload = _reply_shape(message)
                self._on_reply(request_id, ok, payload)
        except ValueError as exc:  # DecodeError, or a malformed reply / error payload
            self.kill(f"sent an undecodable frame ({exc})", blame=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose("closed its pipe")
        if self.process.exitcode is None:
            self._kill_process()

    # -- requests ----------------------------------------------------------

    def submit(
        self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: float
    ) -> asyncio.Future[Any]:
        """Send one request; the future gets its result or its HwgateError."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._lost_reason is not None or self._transport is None:
            error = WorkerLostInFlight(f"hsm worker {self.name} {self._lost_reason}", ran=False)
            future.set_exception(error)
            return future
        request_id = next(self._ids)
        if not self._pending:
            self._head_since = time.monotonic()
        self._pending[request_id] = _Pending(future, budget)
        self._transport.write(encode((request_id, op, args, kwargs)))
        return future

    def notify(self, op: str) -> None:
        """Send a request that gets no reply (cache invalidation)."""
        if self._lost_reason is None and self._transport is not None:
            self._transport.write(encode((None, op, (), {})))

    def overdue(self, now: float) -> bool:
        """True when the running request has exceeded its budget."""
        if not self._pending:
            return False
        head = next(iter(self._pending.values()))
        return now - self._head_since > head.budget

    def _on_reply(self, request_id: int, ok: bool, payload: Any) -> None:
        if request_id == STARTUP_ID:
            self._on_startup(ok, payload)
            return
        pending = self._pending.pop(request_id, None)
        self._head_since = time.monotonic()
        if pending is None or pending.future.done():
            return  # the caller was cancelled; the reply is dropped
        if ok:
            pending.future.set_result(payload)
        else:
            pending.future.set_exception(error_from_wire(payload))

    def _on_startup(self, ok: bool, payload: Any) -> None:
        if self.ready.done():
            return
        if ok:
            if not isinstance(payload, dict):
                raise ValueError("malformed start-up report")
            self.ready.set_result(payload)
        else:
            self.ready.set_exception(error_from_wire(payload))

    # -- death ---------------------------------------------------------------

    def kill(self, reason: str, *, blame: bool = False) -> None:
        """Kill the process (hung or misbehaving); every pending request fails.
        ``blame``: the request it is running caused this, and must not be resent."""
        if self._lost_reason is None:
            log.warning("hsm worker %s (pid %s) %s: killing it", self.name, self.pid, reason)
        self._lose(reason, blame=blame)
        self._kill_process()

    def close(self) -> None:
        """Ask the worker to exit: it sees EOF, closes its session and returns."""
        self._lose("was closed")
        if self._transport is not None:
            self._transport.close()

    def _kill_process(self) -> None:
        if self.process.exitcode is None:
            self.process.kill()
        if self._transport is not None:
            self._transport.abort()

    def _lose(self, reason: str, *, blame: bool = False) -> None:
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        pending, self._pending = self._pending, {}
        message = f"hsm worker {self.name} {reason}"
        for index, item in enumerate(pending.values()):
            if not item.future.done():
                running = index == 0  # served in order: the oldest one is running
                lost = WorkerLostInFlight(message, ran=running, blamed=blame and running)
                item.future.set_exception(lost)
        if not self.ready.done():
            error = HsmUnavailable(f"hsm worker {self.name} {reason} while starting")
            self.ready.set_exception(error)
            self.ready.exception()  # mark retrieved: a start abandoned by the pool is not a bug

    def _on_exit(self) -> None:
        self._loop.remove_reader(self.process.sentinel)
        self.process.join(0)
        code = self.process.exitcode
        self._lose(f"exited ({_describe_exit(code)})")
        if self._transport is not None:
            self._transport.abort()
        if not self.exited.done():
            self.exited.set_result(code)

    def retrieve_startup_error(self) -> HwgateError | None:
        """The start-up failure, if the worker reported or suffered one."""
        if self.ready.done() and not self.ready.cancelled():
            exc = self.ready.exception()
            return exc if isinstance(exc, HwgateError) else None
        return None


def _reply_shape(message: Any) -> tuple[int, bool, Any]:
    """``(request_id, ok, payload)`` of a reply; ValueError for any other shape."""
    if not (isinstance(message, tuple) and len(message) == 3):
        raise ValueError("a reply is not a 3-tuple")
    request_id, ok, payload = message
    if type(request_id) is not int or type(ok) is not bool:
        raise ValueError("malformed reply header")
    return request_id, ok, payload


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        return f"signal {-code}"
    return f"code {code}"
