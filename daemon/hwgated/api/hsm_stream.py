"""SignStream: many signatures on one stream, batched for throughput, answered in order.

A pump task reads requests into a bounded queue (a client that sends faster
than we sign is held back by gRPC flow control, not by our memory). The
stream takes whatever has arrived, up to CHUNK_MAX requests, as one chunk;
consecutive requests of a chunk that name the same key and algorithm become
``pool.sign_many`` calls of at most SLICE inputs (one worker round trip each).
Chunks run concurrently, at most MAX_INFLIGHT per stream, and their answers
are sent in request order. Batches grow by themselves under load (more
arrives while a chunk is signed) and stay single requests for a client that
waits for each answer.

Bounds and fairness: what a stream holds is counted in digests, not requests.
The pump takes MAX_STREAM_DIGESTS of budget for the requests it has read and
not yet answered (a request weighs its digest count), so a stream of
1024-digest batches holds a few batches, not QUEUE_MAX of them; and at most
SLICES_INFLIGHT of its slices wait for a worker at once, so streams take turns
in the pool. The pool serves stream slices as bulk work: they may fill only
part of each worker's pipeline and wait behind unary calls, so a unary Sign
waits for at most the slices already in a worker's pipe, whatever the bulk
load (see ``HsmPool``). A client that stops reading its answers stops its
own stream (the budget is only returned when an answer is sent), not the
workers.

Every failure of a well-formed request is per item: a bad digest fails that
item; a key the caller may not use, or a lost worker, fails the items of that
batch. Each failure is the google.rpc.Status (ErrorInfo and metadata included)
the item would have ended with as a unary Sign, and the stream goes on. A request that is not
a valid message at all ends the stream: the items before it are answered,
then the call ends with INVALID_ARGUMENT (never OK: the client must learn that
its later requests were not read).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from google.rpc import status_pb2

from hwgate.v1 import hsm_pb2
from hwgated.api import hsm_convert
from hwgated.api.hsm_access import SIGN_CLASSES, KeyAccess, ResolvedKey, annotated
from hwgated.api.hsm_signing import audit_sign, check_key_type, checked_input, sign_input
from hwgated.edge.audited import outcome
from hwgated.edge.status import status_message
from hwgated.errors import InvalidArgument
from hwgated.hsm import SignAlgorithm

log = logging.getLogger(__name__)

CHUNK_MAX = 64
MAX_INFLIGHT = 4
BATCH_MAX = 1024  # digests in one batch request
SLICE = 32  # inputs per worker round trip (a unary Sign may wait for one); slices spread
MIN_SLICE = 2  # a batch is cut for more workers only while each piece keeps this many
QUEUE_MAX = 256
MAX_STREAM_DIGESTS = 4096  # digests read and not yet answered, per stream
SLICES_INFLIGHT = 4  # slices of one stream waiting for or on a worker

Request = hsm_pb2.SignStreamRequest
Response = hsm_pb2.SignStreamResponse


def stream_error(exc: BaseException) -> status_pb2.Status:
    """The status an item gets for *exc*: the one a unary Sign would end with."""
    return status_message(exc)


@dataclass
class _Group:
    """Consecutive requests naming the same key and algorithm: one sign_many call."""

    first: Request
    indexes: list[int] = field(default_factory=list)


def _group_key(request: Request) -> tuple[object, ...]:
    key = request.key
    which = key.WhichOneof("selector")
    return (key.token, which, getattr(key, which) if which else None, request.algorithm)


@dataclass(frozen=True)
class _End:
    """The last queue item: the client half-closed (error None) or its stream broke."""

    error: BaseException | None = None


class _Budget:
    """Digests one stream may hold; the pump waits for room, so gRPC flow control
    holds the client back. Only the pump waits, so one event suffices."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._changed = asyncio.Event()

    def weight(self, request: Request) -> int:
        return min(max(1, len(request.digest_batch.digests)), self.total)

    async def take(self, amount: int) -> None:
        while self._free < amount:
            self._changed.clear()
            await self._changed.wait()
        self._free -= amount

    def give(self, amount: int) -> None:
        self._free += amount
        self._changed.set()


class StreamSigner:
    """Runs one SignStream call; one instance per call."""

    def __init__(self, access: KeyAccess) -> None:
        self._access = access
        self._budget = _Budget(MAX_STREAM_DIGESTS)
        self._slices = asyncio.Semaphore(SLICES_INFLIGHT)

    async def run(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response]:
        """Answers for *requests*, in order, until the client half-closes.

        Raises the error that broke the request stream (an undecodable request:
        InvalidArgument) after answering every request read before it.
        """
        queue: asyncio.Queue[Request | _End] = asyncio.Queue(QUEUE_MAX)
        pump = asyncio.create_task(_pump(requests, queue, self._budget))
        inflight: collections.deque[tuple[asyncio.Task[list[Response]], int]] = collections.deque()
        getter: asyncio.Task[Request | _End] | None = None
        end: _End | None = None
        try:
            while end is None or inflight:
                if end is None and len(inflight) < MAX_INFLIGHT:
                    if getter is None:
                        getter = asyncio.create_task(queue.get())
                    if not inflight:
                        await asyncio.wait({getter})
                    if getter.done():
                        first, getter = getter.result(), None
                        chunk, end = _drain(first, queue)
                        if chunk:
                            weight = sum(self._budget.weight(r) for r in chunk)
                            inflight.append((asyncio.create_task(self._chunk(chunk)), weight))
                        continue
                if not inflight:
                    continue
                waiting: set[asyncio.Future[object]] = {inflight[0][0]}  # type: ignore[arg-type]
                if getter is not None and len(inflight) < MAX_INFLIGHT:
                    waiting.add(getter)  # type: ignore[arg-type]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                while inflight and inflight[0][0].done():
                    done, weight = inflight.popleft()
                    for response in done.result():
                        yield response
                    self._budget.give(weight)
        finally:
            for pending in (pump, getter, *(t for t, _ in inflight)):
                if pending is not None:
                    pending.cancel()
        if end.error is not None:
            raise end.error

    async def _chunk(self, chunk: list[Request]) -> list[Response]:
        responses = [Response(request_id=r.request_id) for r in chunk]
        groups: list[_Group] = []
        last: tuple[object, ...] | None = None
        for index, request in enumerate(chunk):
            key = _group_key(request)
            if key != last:
                groups.append(_Group(request))
                last = key
            groups[-1].indexes.append(index)
        await asyncio.gather(*(self._group(g, chunk, responses) for g in groups))
        return responses

    async def _group(self, group: _Group, chunk: list[Request], out: list[Response]) -> None:
        """Sign one group; every failure lands in the responses of the items it hits."""
        algorithm: SignAlgorithm | None = None
        label = ""
        try:
            algorithm = hsm_convert.sign_algorithm(group.first.algorithm)
            key = await self._access.resolve(group.first.key, SIGN_CLASSES)
            label = key.label
            check_key_type(algorithm, key.info)
        except Exception as exc:
            error = stream_error(exc)
            for index in group.indexes:
                out[index].error.CopyFrom(error)
            audit_sign(label or hsm_convert.ref_text(group.first.key), algorithm, (), outcome(exc))
            return
        ready: list[tuple[int, int, int]] = []  # (index, first input, count)
        inputs: list[bytes] = []
        for index in group.indexes:
            try:
                items = _items(algorithm, chunk[index])
            except Exception as exc:
                out[index].error.CopyFrom(stream_error(exc))
                continue
            ready.append((index, len(inputs), len(items)))
            inputs += items
        if not ready:
            return
        try:
            with annotated(key.token, label):
                signatures = await _sign_spread(key, algorithm, inputs, self._slices)
        except Exception as exc:
            error = stream_error(exc)
            for index, _, _ in ready:
                out[index].error.CopyFrom(error)
            audit_sign(label, algorithm, inputs, outcome(exc), count=len(inputs), stream=True)
            return
        for index, start, count in ready:
            if chunk[index].HasField("digest_batch"):
                out[index].signature_batch.signatures.extend(signatures[start : start + count])
            else:
                out[index].signature = signatures[start]
        audit_sign(label, algorithm, inputs, "ok", count=len(inputs), stream=True)


def _items(algorithm: SignAlgorithm, request: Request) -> list[bytes]:
    """The inputs one request asks to sign: its batch, or its single digest/data."""
    if request.WhichOneof("input") != "digest_batch":
        return [sign_input(algorithm, request)]
    digests = request.digest_batch.digests
    if not digests:
        raise InvalidArgument("digest_batch holds no digests", field="digest_batch.digests")
    if len(digests) > BATCH_MAX:
        raise InvalidArgument(
            f"at most {BATCH_MAX} digests per request", field="digest_batch.digests"
        )
    return [checked_input(algorithm, "digest", digest) for digest in digests]


async def _sign_spread(
    key: ResolvedKey, algorithm: SignAlgorithm, inputs: list[bytes], slots: asyncio.Semaphore
) -> list[bytes]:
    """One sign_many per slice, concurrently (every worker of the token gets a share),
    at most *slots* of the stream's slices in the pool at once."""

    async def one(part: list[bytes]) -> list[bytes]:
        async with slots:
            return await key.pool.sign_many(key.ref, algorithm, part)

    parts = slices(inputs, key.pool.config.workers)
    results = await asyncio.gather(*(one(part) for part in parts))
    return [signature for part in results for signature in part]


def slices(inputs: list[bytes], workers: int) -> list[list[bytes]]:
    """*inputs* cut into worker round trips of equal size: an even share per worker
    (rounded up), but at least MIN_SLICE and at most SLICE inputs; the last may be short.

    A batch of 8 used to go to one worker as one slice while the other idled: a
    coalesced batch of 8 threads' signatures took 8 signing times instead of 4.
    A big batch is cut as before (SLICE each), so a loaded pool sees the same work.
    """
    count = len(inputs)
    size = min(SLICE, max(MIN_SLICE, -(-count // max(1, workers))))
    return [inputs[i : i + size] for i in range(0, count, size)]


async def _pump(
    requests: AsyncIterator[Request], queue: asyncio.Queue[Request | _End], budget: _Budget
) -> None:
    """Move requests into the queue, each after taking its weight of the budget; an
    ``_End`` marks the half-close, or carries what broke the request stream."""
    try:
        async for request in requests:
            await budget.take(budget.weight(request))
            await queue.put(request)
    except Exception as exc:  # an undecodable request, or the call is being torn down
        log.debug("SignStream request stream ended: %s", type(exc).__name__)
        await queue.put(_End(exc))
        return
    await queue.put(_End())


def _drain(
    first: Request | _End, queue: asyncio.Queue[Request | _End]
) -> tuple[list[Request], _End | None]:
    """The next chunk: *first* and whatever else is queued (up to CHUNK_MAX); and the end."""
    if isinstance(first, _End):
        return [], first
    chunk = [first]
    while len(chunk) < CHUNK_MAX:
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        if isinstance(item, _End):
            return chunk, item
        chunk.append(item)
    return chunk, None
