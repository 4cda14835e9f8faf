"""Keeping a token's worker processes alive: start, replace, back off, time out.

One task per worker slot starts a worker, waits for it to exit and starts the
next. A module that cannot load or log in leaves the pool DOWN; the slots keep
retrying with capped exponential backoff, one probe at a time while no worker
serves, and never with a PIN the token has rejected (that would burn the PIN
retry counter): they wait until the PIN source holds a different PIN. A worker
that dies soon after starting, again and again, is restarted with a short
growing delay so a crash loop cannot spin the CPU. A request over its budget
gets its worker killed (the slot replaces it; only that worker's in-flight
requests fail).

The supervisor knows nothing of requests: it tells its owner when capacity
appears (``on_capacity``) and when waiting callers must be refused
(``on_refuse``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable

from hwgated.hsm.channel import WorkerChannel
from hwgated.hsm.config import TokenConfig, read_pin
from hwgated.hsm.errors import HsmLoginFailed, HsmUnavailable, HwgateError
from hwgated.hsm.rejected_pin import RejectedPin
from hwgated.hsm.spawn import spawn_worker

log = logging.getLogger("hwgated.hsm")

_CRASH_WINDOW = 5.0  # a worker dying sooner than this after start counts as a crash loop


class PoolState(enum.StrEnum):
    """Health of a pool: READY/DEGRADED serve, STARTING waits, DOWN/CLOSED refuse."""

    STARTING = "STARTING"
    READY = "READY"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"
    CLOSED = "CLOSED"


class WorkerSupervisor:
    """The worker processes of one token and the pool state they add up to."""

    def __init__(
        self,
        config: TokenConfig,
        *,
        start_timeout: float,
        backoff_initial: float,
        backoff_max: float,
        on_state: Callable[[PoolState], None] | None = None,
        on_capacity: Callable[[], None] = lambda: None,
        on_refuse: Callable[[HwgateError], None] = lambda _: None,
    ) -> None:
        self.config = config
        # One entry per worker: the serving channel or None. Mutated in place only,
        # so the dispatcher can hold the same list.
        self.slots: list[WorkerChannel | None] = [None] * config.workers
        self._start_timeout = start_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._on_state = on_state
        self._on_capacity = on_capacity
        self._on_refuse = on_refuse
        self._channels: set[WorkerChannel] = set()  # every live process, starting or serving
        self._tasks: list[asyncio.Task[None]] = []
        self._state = PoolState.STARTING
        self._state_changed = asyncio.Event()
        self._last_error: HwgateError | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._probe_lock = asyncio.Lock()
        self._rejected = RejectedPin()
        self._token_label = config.token_label

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start the slot tasks and the timeout watch (idempotent)."""
        if self._tasks:
            return
        for index in range(self.config.workers):
            self._tasks.append(asyncio.create_task(self._run_slot(index)))
        self._tasks.append(asyncio.create_task(self._watch_timeouts()))

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker serves or the pool is DOWN/CLOSED, at most ``timeout``
        seconds; True when the pool serves (possibly DEGRADED) at the end."""
        deadline = time.monotonic() + timeout
        while self._state in (PoolState.STARTING, PoolState.DEGRADED):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), remaining)
        return self.healthy

    async def close(self) -> None:
        """Stop the tasks, then every worker (they log out as their session closes)."""
        self._set_state(PoolState.CLOSED)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        workers = list(self._channels)
        for worker in workers:
            worker.close()
        for worker in workers:
            try:
                await asyncio.wait_for(asyncio.shield(worker.exited), 5.0)
            except TimeoutError:
                worker.kill("did not exit on close")
                await worker.exited
        self.slots[:] = [None] * len(self.slots)

    # -- what the pool reports -------------------------------------------------

    @property
    def state(self) -> PoolState:
        return self._state

    @property
    def healthy(self) -> bool:
        return self._state in (PoolState.READY, PoolState.DEGRADED)

    @property
    def last_error(self) -> HwgateError | None:
        return self._last_error

    @property
    def start_failures(self) -> int:
        return self._failures

    @property
    def supervising(self) -> bool:
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    @property
    def token_label(self) -> str | None:
        """The configured token label, or the one the first worker found (by serial)."""
        return self._token_label

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.slots if w is not None and w.alive and w.pid is not None]

    def refusal(self) -> HwgateError | None:
        """The error for a new call when the pool cannot serve it even later (DOWN or
        CLOSED), else None: a call may wait for a worker."""
        if self._state is PoolState.CLOSED:
            return HsmUnavailable("the HSM pool is closed")
        if self._state is not PoolState.DOWN:
            return None
        error = self._last_error or HsmUnavailable("the HSM is unavailable")
        return type(error)(error.message)  # a fresh instance per caller

    def broadcast(self, op: str) -> None:
        """Send a no-reply notice (e.g. ``invalidate``) to every serving worker."""
        for worker in self.slots:
            if worker is not None and worker.alive:
                worker.notify(op)

    # -- the slots ---------------------------------------------------------------

    async def _run_slot(self, index: int) -> None:
        crashes = 0
        while True:
            delay = self._retry_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                worker = await self._start_gated(index)
            except HwgateError as exc:
                self._on_start_failed(exc)
                continue
            if worker is None:
                continue
            self._on_ready(index, worker)
            code = await asyncio.shield(worker.exited)
            self.slots[index] = None
            lived = time.monotonic() - worker.started_at
            log.warning(
                "hsm %s worker %d (pid %s) is gone (exit %s) after %.1fs; replacing it",
                self.config.name,
                index,
                worker.pid,
                code,
                lived,
            )
            self._update_state()
            crashes = crashes + 1 if lived < _CRASH_WINDOW else 0
            if crashes > 1:
                await asyncio.sleep(min(0.05 * 2**crashes, 5.0))

    async def _start_gated(self, index: int) -> WorkerChannel | None:
        """Start one worker; while none serves, only one start at a time (a probe)."""
        if self._ready_count():
            return await self._start_worker(index)
        async with self._probe_lock:
            if time.monotonic() < self._retry_at:
                return None  # a probe just failed: back to waiting
            return await self._start_worker(index)

    async def _start_worker(self, index: int) -> WorkerChannel:
        pin = await asyncio.to_thread(read_pin, self.config)
        try:
            pin_digest = self._rejected.digest(pin)
            if self._rejected.is_rejected(pin_digest):
                raise HsmLoginFailed("the token rejected this PIN; waiting for a new one")
            worker = await spawn_worker(self.config, index, pin)
        finally:
            pin[:] = bytes(len(pin))
        self._channels.add(worker)
        worker.exited.add_done_callback(lambda _: self._channels.discard(worker))
        try:
            info = await asyncio.wait_for(asyncio.shield(worker.ready), self._start_timeout)
        except asyncio.CancelledError:
            worker.kill("start was cancelled")
            raise
        except TimeoutError:
            worker.kill(f"did not start within {self._start_timeout:.0f}s")
            await worker.exited
            raise HsmUnavailable("the HSM worker did not start in time") from None
        except HsmLoginFailed:
            self._rejected.reject(pin_digest)
            await worker.exited
            raise
        except HwgateError:
            await worker.exited
            raise
        self._rejected.forget()
        self._token_label = self._token_label or info.get("token_label")
        return worker

    def _on_ready(self, index: int, worker: WorkerChannel) -> None:
        self.slots[index] = worker
        was_down = self._state is PoolState.DOWN
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = None
        log.info("hsm %s worker %d ready (pid %s)", self.config.name, index, worker.pid)
        if was_down:
            log.warning("hsm %s is serving again", self.config.name)
        self._update_state()
        self._on_capacity()

    def _on_start_failed(self, error: HwgateError) -> None:
        self._failures += 1
        backoff = min(self._backoff_initial * 2 ** (self._failures - 1), self._backoff_max)
        self._retry_at = time.monotonic() + backoff
        self._last_error = error
        log.error(
            "hsm %s: worker start failed: %s [%s] (%s); retry in %.1fs",
            self.config.name,
            error.message,
            error.reason,
            self.config.describe_pin_source(),
            backoff,
        )
        self._update_state()

    # -- state -------------------------------------------------------------------

    def _ready_count(self) -> int:
        return sum(1 for w in self.slots if w is not None and w.alive)

    def _update_state(self) -> None:
        if self._state is PoolState.CLOSED:
            return
        ready = self._ready_count()
        if ready == len(self.slots):
            self._set_state(PoolState.READY)
        elif ready:
            self._set_state(PoolState.DEGRADED)
        elif self._last_error is not None:
            self._set_state(PoolState.DOWN)
            refusal = self.refusal()
            assert refusal is not None  # DOWN always refuses
            self._on_refuse(refusal)
        else:
            self._set_state(PoolState.STARTING)

    def _set_state(self, state: PoolState) -> None:
        if state is not self._state:
            if state is PoolState.DOWN:
                log.error(
                    "hsm %s is DOWN: %s",
                    self.config.name,
                    self._last_error.message if self._last_error else "unknown",
                )
            self._state = state
            if self._on_state is not None:
                self._on_state(state)
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    async def _watch_timeouts(self) -> None:
        """Kill a worker whose running request is over budget (the slot restarts it)."""
        tick = min(max(self.config.op_timeout / 10, 0.02), 0.5)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for worker in self.slots:
                if worker is not None and worker.alive and worker.overdue(now):
                    worker.kill(f"exceeded op_timeout {self.config.op_timeout:g}s", blame=True)
                    self._update_state()
