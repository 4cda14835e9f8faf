"""SignStream: many signatures on one stream, batched for throughput, answered in order.

A pump task reads requests into a bounded queue (a client that sends faster
than we sign is held back by gRPC flow control, not by our memory). The
stream takes whatever has arrived, up to CHUNK_MAX requests, as one chunk;
consecutive requests of a chunk that name the same key and algorithm become
one ``pool.sign_many`` call (one worker round trip). Chunks run concurrently,
at most MAX_INFLIGHT per stream, and their answers are sent in request order.
Batches grow by themselves under load (more arrives while a chunk is signed)
and stay single requests for a client that waits for each answer.

Fairness: a stream never holds more than MAX_INFLIGHT pool calls of at most
CHUNK_MAX signatures each, and the pool serves calls in FIFO order, so a bulk
stream delays a unary Sign by a bounded amount. A client that stops reading
its answers stops its own stream (its chunks wait on the send), not the
workers.

Every failure is per item: a bad digest fails that item; a key the caller
may not use, or a lost worker, fails the items of that batch. Each failure is
a StreamError with the status code and reason the item would have had as a
unary Sign, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from hwgate.v1 import error_pb2, hsm_pb2
from hwgated.api import hsm_convert
from hwgated.api.errors import classify
from hwgated.api.hsm_access import SIGN_CLASSES, KeyAccess, ResolvedKey, annotated, outcome
from hwgated.api.hsm_signing import audit_sign, check_key_type, sign_input
from hwgated.errors import InvalidArgument
from hwgated.hsm import SignAlgorithm

log = logging.getLogger(__name__)

CHUNK_MAX = 64
MAX_INFLIGHT = 4
BATCH_MAX = 1024  # digests in one batch request
SLICE = 64  # inputs per worker round trip; slices run on different workers
QUEUE_MAX = 256

Request = hsm_pb2.SignStreamRequest
Response = hsm_pb2.SignStreamResponse


def stream_error(exc: BaseException) -> error_pb2.StreamError:
    """The StreamError an item gets for *exc* (same code and reason as a unary call)."""
    code, reason, message, _metadata = classify(exc)
    return error_pb2.StreamError(
        code=code.value[0],
        reason=cast("error_pb2.ErrorReason", error_pb2.ErrorReason.Value(reason)),
        message=message,
    )


@dataclass
class _Group:
    """Consecutive requests naming the same key and algorithm: one sign_many call."""

    first: Request
    indexes: list[int] = field(default_factory=list)


def _group_key(request: Request) -> tuple[object, ...]:
    key = request.key
    which = key.WhichOneof("selector")
    return (key.token, which, getattr(key, which) if which else None, request.algorithm)


class StreamSigner:
    """Runs one SignStream call; one instance per call."""

    def __init__(self, access: KeyAccess) -> None:
        self._access = access

    async def run(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response]:
        """Answers for *requests*, in order, until the client half-closes."""
        queue: asyncio.Queue[Request | None] = asyncio.Queue(QUEUE_MAX)
        pump = asyncio.create_task(_pump(requests, queue))
        inflight: collections.deque[asyncio.Task[list[Response]]] = collections.deque()
        getter: asyncio.Task[Request | None] | None = None
        eof = False
        try:
            while not eof or inflight:
                if not eof and len(inflight) < MAX_INFLIGHT:
                    if getter is None:
                        getter = asyncio.create_task(queue.get())
                    if not inflight:
                        await asyncio.wait({getter})
                    if getter.done():
                        first, getter = getter.result(), None
                        chunk, eof = _drain(first, queue)
                        if chunk:
                            inflight.append(asyncio.create_task(self._chunk(chunk)))
                        continue
                if not inflight:
                    continue
                waiting: set[asyncio.Future[object]] = {inflight[0]}  # type: ignore[arg-type]
                if getter is not None and len(inflight) < MAX_INFLIGHT:
                    waiting.add(getter)  # type: ignore[arg-type]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                while inflight and inflight[0].done():
                    for response in inflight.popleft().result():
                        yield response
        finally:
            for task in (pump, getter, *inflight):
                if task is not None:
                    task.cancel()

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
                signatures = await _sign_spread(key, algorithm, inputs)
        except Exception as exc:
            error = stream_error(exc)
            for index, _, _ in ready:
                out[index].error.CopyFrom(error)
            audit_sign(label, algorithm, inputs, error_name(error), count=len(inputs), stream=True)
            return
        for index, start, count in ready:
            if chunk[index].digests:
                out[index].signatures.extend(signatures[start : start + count])
            else:
                out[index].signature = signatures[start]
        audit_sign(label, algorithm, inputs, "ok", count=len(inputs), stream=True)


def _items(algorithm: SignAlgorithm, request: Request) -> list[bytes]:
    """The inputs one request asks to sign: its batch, or its single digest/data."""
    if not request.digests:
        return [sign_input(algorithm, request.digest, request.data)]
    if request.digest or request.data:
        raise InvalidArgument("set digests or digest/data, not both", field="digests")
    if len(request.digests) > BATCH_MAX:
        raise InvalidArgument(f"at most {BATCH_MAX} digests per request", field="digests")
    return [sign_input(algorithm, digest, b"") for digest in request.digests]


async def _sign_spread(
    key: ResolvedKey, algorithm: SignAlgorithm, inputs: list[bytes]
) -> list[bytes]:
    """One sign_many per slice, concurrently: every worker of the token gets a share."""
    slices = [inputs[i : i + SLICE] for i in range(0, len(inputs), SLICE)]
    results = await asyncio.gather(
        *(key.pool.sign_many(key.ref, algorithm, part) for part in slices)
    )
    return [signature for part in results for signature in part]


def error_name(error: error_pb2.StreamError) -> str:
    return error_pb2.ErrorReason.Name(error.reason)


async def _pump(requests: AsyncIterator[Request], queue: asyncio.Queue[Request | None]) -> None:
    """Move requests into the queue; None marks the end (half-close, or the call broke)."""
    try:
        async for request in requests:
            await queue.put(request)
    except Exception as exc:  # the call is being torn down; answer what we have
        log.debug("SignStream request stream ended: %s", type(exc).__name__)
    await queue.put(None)


def _drain(
    first: Request | None, queue: asyncio.Queue[Request | None]
) -> tuple[list[Request], bool]:
    """The next chunk: *first* and whatever else is queued (up to CHUNK_MAX); and eof."""
    if first is None:
        return [], True
    chunk = [first]
    while len(chunk) < CHUNK_MAX:
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        if item is None:
            return chunk, True
        chunk.append(item)
    return chunk, False
