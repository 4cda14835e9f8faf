"""HsmPool: N worker processes serving one token, seen from asyncio as one async API.

Why processes: python-pkcs11 initializes modules without OS locking, login is
per application, a module cannot be reloaded after C_Finalize, and a vendor
module can crash or hang. Each worker is its own application with one logged-in
session; a dead or hung worker is replaced and only its in-flight requests fail
(HsmWorkerLost). A module that cannot load or log in leaves the pool DOWN; it
keeps retrying in the background with capped exponential backoff, and it never
retries a PIN the token has rejected (that would burn the PIN retry counter):
it waits until the PIN source holds a different PIN.

Dispatch goes to the least-loaded ready worker. ``pipeline_depth`` requests may
be outstanding per worker so a worker never idles while the next request
crosses the pipe; callers beyond that wait in the parent, in two FIFO queues.
Bulk work (``sign_many`` of more than ``SMALL_BATCH`` items: stream slices)
may fill only BULK_DEPTH of a worker's pipeline slots and is handed free
slots only when no interactive call (a unary sign, a lookup, key management)
waits. So a unary call never queues behind bulk work in the parent, and in a
worker it waits for at most the one slice already running there: its wait is
bounded by one slice whatever the bulk load. (A slice takes tens of
milliseconds, so the round trip a worker idles between two bulk slices costs
bulk throughput about one percent.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import hashlib
import hmac
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from hwgated.hsm.algorithms import algorithm_spec, check_batch, check_sign_input
from hwgated.hsm.channel import WorkerChannel
from hwgated.hsm.config import TokenConfig, read_pin
from hwgated.hsm.errors import (
    HsmError,
    HsmLoginFailed,
    HsmUnavailable,
    InvalidArgument,
    KeyNotFound,
)
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.types import (
    DerivedKey,
    DiversifyMechanism,
    KeyInfo,
    KeyPairSpec,
    KeyUsage,
    SecretKeySpec,
    SignAlgorithm,
)
from hwgated.hsm.wire import encode, raw_frame
from hwgated.hsm.worker import WorkerInit, worker_main

log = logging.getLogger("hwgated.hsm")

_E = TypeVar("_E", bound=enum.Enum)

BATCH_UNIT = 64  # a batch gets op_timeout per this many items
SMALL_BATCH = 4  # sign_many of at most this many items is interactive, not bulk
BULK_DEPTH = 1  # pipeline slots per worker that bulk work may hold
_CRASH_WINDOW = 5.0  # a worker dying sooner than this after start counts as a crash loop
_DESCRIBE_CACHE_MAX = 1024  # distinct references remembered by ``describe``
DESCRIBE_CLASSES = (KeyClass.PRIVATE, KeyClass.SECRET, KeyClass.PUBLIC)


class PoolState(enum.StrEnum):
    """Health of a pool: READY/DEGRADED serve, STARTING waits, DOWN/CLOSED refuse."""

    STARTING = "STARTING"
    READY = "READY"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"
    CLOSED = "CLOSED"


class HsmPool:
    """Worker processes for one ``[[hsm.token]]``; every public method is a coroutine."""

    def __init__(
        self,
        config: TokenConfig,
        *,
        pipeline_depth: int = 4,
        start_timeout: float | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_state: Callable[[PoolState], None] | None = None,
    ) -> None:
        config.validate()
        self._on_state = on_state
        self.config = config
        self._depth = max(1, pipeline_depth)
        self._start_timeout = start_timeout or max(30.0, config.op_timeout)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._ctx = multiprocessing.get_context("spawn")
        self._slots: list[WorkerChannel | None] = [None] * config.workers
        self._rotor = 0
        self._channels: set[WorkerChannel] = set()  # every live process, starting or serving
        self._bulk_depth = min(BULK_DEPTH, self._depth)
        self._waiters: collections.deque[asyncio.Future[WorkerChannel]] = collections.deque()
        self._bulk_waiters: collections.deque[asyncio.Future[WorkerChannel]] = collections.deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._state = PoolState.STARTING
        self._state_changed = asyncio.Event()
        self._last_error: HsmError | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._probe_lock = asyncio.Lock()
        self._admin_lock = asyncio.Lock()
        self._pin_key = os.urandom(32)
        self._rejected_pin: bytes | None = None
        self._token_label = config.token_label
        self._described: dict[tuple[KeyRef, tuple[KeyClass, ...]], KeyInfo] = {}

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the workers in the background; use ``wait_ready`` to wait for them."""
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
        """Stop every worker (they log out as their session closes) and refuse new calls."""
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
        self._slots = [None] * len(self._slots)
        self._fail_waiters(HsmUnavailable("the HSM pool is closed"))

    @property
    def state(self) -> PoolState:
        return self._state

    @property
    def healthy(self) -> bool:
        """True when at least one worker serves (health SERVING)."""
        return self._state in (PoolState.READY, PoolState.DEGRADED)

    @property
    def last_error(self) -> HsmError | None:
        """Why the last worker start failed (safe to log and show), None once healthy."""
        return self._last_error

    @property
    def start_failures(self) -> int:
        """Consecutive failed worker starts (0 once a worker is ready); drives the backoff."""
        return self._failures

    @property
    def supervising(self) -> bool:
        """True while the tasks that start, replace and time out workers all run
        (the systemd watchdog's liveness probe for this pool)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def worker_pids(self) -> list[int]:
        """Pids of the workers currently serving (diagnostics, tests)."""
        return [w.pid for w in self._slots if w is not None and w.alive and w.pid is not None]

    # -- the API ---------------------------------------------------------------

    async def list_keys(self) -> list[KeyInfo]:
        """Every key on the token, described without key material."""
        result: list[KeyInfo] = await self._call("list_keys", ())
        return result

    async def describe(
        self, ref: KeyRef | str, classes: tuple[KeyClass, ...] = DESCRIBE_CLASSES
    ) -> KeyInfo:
        """The one key ``ref`` selects among ``classes`` (searched in order), described.

        Callers authorize by the resolved key's label (a reference by id or URI
        names no label), so this runs before every key use: answers are cached
        here and dropped whenever this pool creates or destroys objects, the same
        moments the workers drop their handle caches.
        """
        parsed = self._ref(ref)
        cache_key = (parsed, classes)
        info = self._described.get(cache_key)
        if info is None:
            info = await self._call("describe", (parsed, classes))
            if len(self._described) >= _DESCRIBE_CACHE_MAX:
                self._described.clear()
            self._described[cache_key] = info
        return info

    async def get_public_key(self, ref: KeyRef | str) -> bytes:
        """DER SubjectPublicKeyInfo of an RSA or EC key."""
        result: bytes = await self._call("get_public_key", (self._ref(ref),))
        return result

    async def sign(self, ref: KeyRef | str, algorithm: SignAlgorithm | str, data: bytes) -> bytes:
        """Sign a digest (HMAC: the data) with a private or secret key; DER for ECDSA."""
        alg = _algorithm(algorithm)
        check_sign_input(alg, data)
        result: bytes = await self._call("sign", (self._ref(ref), alg, bytes(data)))
        return result

    async def sign_many(
        self, ref: KeyRef | str, algorithm: SignAlgorithm | str, digests: Sequence[bytes]
    ) -> list[bytes]:
        """Sign a batch in one worker round trip; all-or-nothing."""
        alg = _algorithm(algorithm)
        items = [bytes(d) for d in digests]
        if not items:
            return []
        check_batch(alg, items)
        cost = max(1.0, len(items) / BATCH_UNIT)
        args = (self._ref(ref), alg, items)
        bulk = len(items) > SMALL_BATCH
        result: list[bytes] = await self._call("sign_many", args, cost=cost, bulk=bulk)
        return result

    async def derive_ecdh(
        self,
        ref: KeyRef | str,
        peer_public: bytes,
        *,
        label: str | None = None,
        extractable: bool = False,
        token_object: bool = True,
        key_length: int = 32,
    ) -> DerivedKey:
        """ECDH (CKD_NULL) into a new AES key of ``key_length`` bytes.

        ``peer_public`` is an X9.62 point or a DER SubjectPublicKeyInfo. The value
        comes back only when ``extractable``; a non-token key is never kept.
        """
        kwargs = dict(
            label=label, extractable=extractable, token_object=token_object, key_length=key_length
        )
        return await self._derive(
            "derive_ecdh", (self._ref(ref), bytes(peer_public)), kwargs, token_object
        )

    async def derive_diversified(
        self,
        master_ref: KeyRef | str,
        mechanism: DiversifyMechanism | str,
        data: bytes,
        iv: bytes | None = None,
        *,
        label: str | None = None,
        extractable: bool = False,
        token_object: bool = True,
        key_length: int | None = None,
    ) -> DerivedKey:
        """AES key = AES-ECB/CBC(master, data); ``data`` a non-empty multiple of 16 bytes.

        ``key_length`` (bytes) defaults to min(len(data), 32) and may not exceed it.
        """
        mech = _enum(DiversifyMechanism, mechanism, "diversification mechanism")
        if not data or len(data) % 16:
            raise InvalidArgument("diversification data must be a non-empty multiple of 16 bytes")
        length = key_length if key_length is not None else min(len(data), 32)
        if length > len(data):
            raise InvalidArgument("key_length exceeds the diversification data length")
        if mech is DiversifyMechanism.AES_CBC and (iv is None or len(iv) != 16):
            raise InvalidArgument("AES_CBC diversification needs a 16-byte iv")
        kwargs = dict(
            label=label, extractable=extractable, token_object=token_object, key_length=length
        )
        args = (self._ref(master_ref), mech, bytes(data), None if iv is None else bytes(iv))
        return await self._derive("derive_diversified", args, kwargs, token_object)

    async def generate_key_pair(
        self,
        label: str,
        key_type: KeyPairSpec | str,
        *,
        id: bytes | None = None,  # the PKCS#11 attribute name
        usage: Iterable[KeyUsage | str] = (KeyUsage.SIGN,),
        token_object: bool = True,
    ) -> KeyInfo:
        """Generate a key pair; KeyExists if the label is taken. Returns the private key."""
        spec = _enum(KeyPairSpec, key_type, "key type")
        usages = tuple(_enum(KeyUsage, u, "usage") for u in usage)
        args = (label, spec, id, usages, token_object)
        async with self._admin_lock:
            info: KeyInfo = await self._call("generate_key_pair", args)
            self._broadcast_invalidate()
        return info

    async def generate_secret_key(
        self,
        label: str,
        key_type: SecretKeySpec | str,
        *,
        id: bytes | None = None,  # the PKCS#11 attribute name
        usage: Iterable[KeyUsage | str] | None = None,
        token_object: bool = True,
        extractable: bool = False,
    ) -> KeyInfo:
        """Generate an AES or generic (HMAC) secret key; KeyExists if the label is taken."""
        spec = _enum(SecretKeySpec, key_type, "key type")
        if usage is None:
            usage = _default_secret_usage(spec)
        usages = tuple(_enum(KeyUsage, u, "usage") for u in usage)
        args = (label, spec, id, usages, token_object, extractable)
        async with self._admin_lock:
            info: KeyInfo = await self._call("generate_secret_key", args)
            self._broadcast_invalidate()
        return info

    async def delete_key(self, ref: KeyRef | str) -> int:
        """Destroy every object the reference matches; the number destroyed."""
        async with self._admin_lock:
            try:
                count: int = await self._call("delete_key", (self._ref(ref),))
            finally:
                self._broadcast_invalidate()
        return count

    async def _derive(
        self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], token_object: bool
    ) -> DerivedKey:
        if not token_object:
            result: DerivedKey = await self._call(op, args, kwargs)
            return result
        async with self._admin_lock:
            result = await self._call(op, args, kwargs)
            self._broadcast_invalidate()
        return result

    def _ref(self, ref: KeyRef | str) -> KeyRef:
        parsed = KeyRef.parse(ref) if isinstance(ref, str) else ref
        if parsed.token is not None and parsed.token != self._token_label:
            raise KeyNotFound(f"the reference names token {parsed.token!r}, not this one")
        if parsed.token_serial is not None and self.config.token_serial not in (
            None,
            parsed.token_serial,
        ):
            raise KeyNotFound("the reference names another token serial")
        return parsed

    # -- dispatch --------------------------------------------------------------

    async def _call(
        self,
        op: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        *,
        cost: float = 1.0,
        bulk: bool = False,
    ) -> Any:
        worker = await self._acquire(bulk)
        try:
            future = worker.submit(op, args, kwargs or {}, self.config.op_timeout * cost)
            return await future
        finally:
            self._release(worker, bulk)

    async def _acquire(self, bulk: bool = False) -> WorkerChannel:
        queue = self._bulk_waiters if bulk else self._waiters
        # Bulk work also lets waiting interactive calls go first.
        if not queue and not (bulk and self._waiters):
            worker = self._pick(bulk)
            if worker is not None:
                self._take(worker, bulk)
                return worker
        if self._state in (PoolState.DOWN, PoolState.CLOSED):
            raise self._refusal()
        waiter: asyncio.Future[WorkerChannel] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result(), bulk)
            raise

    def _pick(self, bulk: bool = False) -> WorkerChannel | None:
        """The least-loaded worker with capacity (for bulk: with a free bulk slot too);
        ties rotate so every worker gets work."""
        best: WorkerChannel | None = None
        slots = self._slots
        count = len(slots)
        self._rotor = (self._rotor + 1) % count
        for offset in range(count):
            worker = slots[(self._rotor + offset) % count]
            if worker is None or not worker.alive or worker.load >= self._depth:
                continue
            if bulk and worker.bulk_load >= self._bulk_depth:
                continue
            if best is None or worker.load < best.load:
                best = worker
                if not worker.load:
                    break
        return best

    @staticmethod
    def _take(worker: WorkerChannel, bulk: bool) -> None:
        worker.load += 1
        if bulk:
            worker.bulk_load += 1

    def _release(self, worker: WorkerChannel, bulk: bool = False) -> None:
        worker.load -= 1
        if bulk:
            worker.bulk_load -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        """Give free capacity to waiting callers: interactive first, then bulk; FIFO each."""
        for queue, bulk in ((self._waiters, False), (self._bulk_waiters, True)):
            while queue:
                if queue[0].done():
                    queue.popleft()
                    continue
                worker = self._pick(bulk)
                if worker is None:
                    break
                self._take(worker, bulk)
                queue.popleft().set_result(worker)

    def _fail_waiters(self, error: HsmError) -> None:
        for queue in (self._waiters, self._bulk_waiters):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    def _refusal(self) -> HsmError:
        if self._state is PoolState.CLOSED:
            return HsmUnavailable("the HSM pool is closed")
        error = self._last_error or HsmUnavailable("the HSM is unavailable")
        return type(error)(error.message)

    def _broadcast_invalidate(self) -> None:
        self._described.clear()
        for worker in self._slots:
            if worker is not None and worker.alive:
                worker.notify("invalidate")

    # -- workers -----------------------------------------------------------------

    async def _run_slot(self, index: int) -> None:
        crashes = 0
        while True:
            delay = self._retry_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                worker = await self._start_gated(index)
            except HsmError as exc:
                self._on_start_failed(exc)
                continue
            if worker is None:
                continue
            self._on_ready(index, worker)
            code = await asyncio.shield(worker.exited)
            self._slots[index] = None
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
            pin_digest = hmac.new(self._pin_key, pin, hashlib.sha256).digest()
            rejected = self._rejected_pin
            if rejected is not None and hmac.compare_digest(pin_digest, rejected):
                raise HsmLoginFailed("the token rejected this PIN; waiting for a new one")
            worker = await self._spawn(index, pin)
        finally:
            pin[:] = bytes(len(pin))
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
            self._rejected_pin = pin_digest
            await worker.exited
            raise
        except HsmError:
            await worker.exited
            raise
        self._rejected_pin = None
        self._token_label = self._token_label or info.get("token_label")
        return worker

    async def _spawn(self, index: int, pin: bytearray) -> WorkerChannel:
        parent_sock, child_sock = socket.socketpair()
        name = f"{self.config.name}/{index}"
        process = self._ctx.Process(
            target=worker_main, args=(child_sock,), name=f"hwgate-hsm {name}", daemon=True
        )
        try:
            await asyncio.to_thread(process.start)
        except OSError as exc:
            parent_sock.close()
            raise HsmUnavailable(f"cannot start an HSM worker: {exc.strerror}") from None
        finally:
            child_sock.close()
        init = WorkerInit(
            module=self.config.module,
            token_label=self.config.token_label,
            token_serial=self.config.token_serial,
            env=dict(self.config.env),
            unset_env=(self.config.pin_env,) if self.config.pin_env else (),
        )
        frame = raw_frame(pin)
        try:
            # A fresh socketpair takes these few hundred bytes without blocking.
            parent_sock.sendall(encode(init))
            parent_sock.sendall(frame)
        except OSError:
            pass  # the worker died at once; its exit is reported below
        finally:
            frame[:] = bytes(len(frame))
        loop = asyncio.get_running_loop()
        _, worker = await loop.create_unix_connection(
            lambda: WorkerChannel(name, process), sock=parent_sock
        )
        self._channels.add(worker)
        worker.exited.add_done_callback(lambda _: self._channels.discard(worker))
        return worker

    def _on_ready(self, index: int, worker: WorkerChannel) -> None:
        self._slots[index] = worker
        was_down = self._state is PoolState.DOWN
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = None
        log.info("hsm %s worker %d ready (pid %s)", self.config.name, index, worker.pid)
        if was_down:
            log.warning("hsm %s is serving again", self.config.name)
        self._update_state()
        self._hand_out()

    def _on_start_failed(self, error: HsmError) -> None:
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

    def _ready_count(self) -> int:
        return sum(1 for w in self._slots if w is not None and w.alive)

    def _update_state(self) -> None:
        if self._state is PoolState.CLOSED:
            return
        ready = self._ready_count()
        if ready == len(self._slots):
            self._set_state(PoolState.READY)
        elif ready:
            self._set_state(PoolState.DEGRADED)
        elif self._last_error is not None:
            self._set_state(PoolState.DOWN)
            self._fail_waiters(self._refusal())
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
            for worker in self._slots:
                if worker is not None and worker.alive and worker.overdue(now):
                    worker.kill(f"exceeded op_timeout {self.config.op_timeout:g}s")
                    self._update_state()


def _algorithm(value: SignAlgorithm | str) -> SignAlgorithm:
    algorithm_spec(value)  # raises InvalidArgument for unknown names
    return SignAlgorithm(value)


def _enum(cls: type[_E], value: Any, what: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        raise InvalidArgument(f"unknown {what} {value!r}") from None


def _default_secret_usage(spec: SecretKeySpec) -> tuple[KeyUsage, ...]:
    if spec is SecretKeySpec.GENERIC_SECRET:
        return (KeyUsage.SIGN, KeyUsage.VERIFY)
    return (KeyUsage.ENCRYPT, KeyUsage.DECRYPT, KeyUsage.DERIVE)
