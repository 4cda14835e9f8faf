"""Batch signing for the blocking client: ``sign_many`` and coalescing of concurrent signs.

A gRPC call costs far more than an ECDSA signature (FACTS.md: ~0.45 ms a call,
~0.07 ms a SoftHSM signature), so signatures are cheap only in batches
(``SignStreamRequest.digest_batch``). Two ways to get there without writing a
stream loop:

- :func:`sign_many`: many digests, one key, one algorithm; the signatures come
  back in the order of the digests.
- :class:`CoalescingSigner`: what ``Client.hsm_key()`` signs through. Threads
  of one process that call ``key.sign()`` at the same time share batches, so a
  ``CertificateBuilder``-based issuer running in a thread pool gets batch
  throughput with no code change. It is adaptive, with no timer: a call that
  finds fewer than ``max_in_flight`` requests of its key on the wire goes out at
  once (a lone caller pays nothing: its call is a plain unary ``Sign``); a call
  that finds them busy waits, and whatever waited while a request was on the wire
  goes out as the next batch ("group commit"). Batches therefore grow exactly
  with the concurrency, up to ``max_batch``.

Per-item errors. The daemon fails a ``digest_batch`` as a whole (one bad digest
fails all of them), so when a batch fails, its items are sent again one by one
(single-item requests on one stream) and each gets its own outcome: a caller is
never failed by another caller's digest. An error of the call itself
(UNAVAILABLE, DEADLINE_EXCEEDED, ...) is every item's error. Errors are
:class:`hwgate.HwgateError` subclasses, the same ones a unary ``Sign`` raises.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from hwgate import errors, names
from hwgate.v1 import hsm_pb2

if TYPE_CHECKING:
    from hwgate.client import Client

MAX_BATCH = 1024  # the proto's limit per DigestBatch
DEFAULT_CHUNK = 256

Outcome = bytes | errors.HwgateError


def batch_requests(
    ref: hsm_pb2.KeyRef, algorithm: int, digests: Sequence[bytes], chunk: int = DEFAULT_CHUNK
) -> tuple[list[list[bytes]], list[hsm_pb2.SignStreamRequest]]:
    """*digests* cut into pieces of *chunk*, and one digest_batch request per piece."""
    chunk = max(1, min(chunk, MAX_BATCH))
    pieces = [list(digests[i : i + chunk]) for i in range(0, len(digests), chunk)]
    requests = [
        hsm_pb2.SignStreamRequest(
            request_id=n,
            key=ref,
            algorithm=algorithm,  # type: ignore[arg-type]
            digest_batch=hsm_pb2.DigestBatch(digests=piece),
        )
        for n, piece in enumerate(pieces)
    ]
    return pieces, requests


def single_requests(
    ref: hsm_pb2.KeyRef, algorithm: int, digests: Sequence[bytes]
) -> list[hsm_pb2.SignStreamRequest]:
    """Each digest as its own SignStream item (its own outcome)."""
    return [
        hsm_pb2.SignStreamRequest(request_id=i, key=ref, algorithm=algorithm, digest=d)  # type: ignore[arg-type]
        for i, d in enumerate(digests)
    ]


def in_request_order(requests: Sequence[Any], responses: Iterable[Any]) -> list[Any]:
    """The responses matched to *requests* by request_id (None where one is missing)."""
    by_id = {r.request_id: r for r in responses}
    return [by_id.get(r.request_id) for r in requests]


def single_outcomes(responses: Sequence[Any]) -> list[Outcome]:
    """A signature or the item's own error per single-item response."""
    out: list[Outcome] = []
    for response in responses:
        if response is None:
            out.append(errors.HwgateError(grpc.StatusCode.UNKNOWN, "no response", "", {}))
        elif response.WhichOneof("result") == "signature":
            out.append(bytes(response.signature))
        else:
            out.append(errors.from_status_message(response.error))
    return out


def batch_signatures(piece: Sequence[bytes], response: Any) -> list[bytes] | None:
    """The signatures of a digest_batch response, None when the batch failed."""
    if response is None or response.WhichOneof("result") != "signature_batch":
        return None
    signatures = [bytes(s) for s in response.signature_batch.signatures]
    return signatures if len(signatures) == len(piece) else None


def raise_first(outcomes: list[Any], return_exceptions: bool) -> list[Any]:
    """*outcomes*, or the first error in order raised with ``item_index`` set."""
    if not return_exceptions:
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, errors.HwgateError):
                outcome.item_index = index  # type: ignore[attr-defined]
                raise outcome
    return outcomes


def _rpc(client: Client, requests: list[hsm_pb2.SignStreamRequest]) -> list[Any]:
    """Every response of one SignStream carrying *requests*, in request order."""
    try:
        responses = client.hsm.SignStream(
            iter(requests), metadata=client.metadata or None, timeout=client.timeout
        )
        return in_request_order(requests, list(responses))
    except grpc.RpcError as err:
        raise errors.from_rpc_error(err) from err


def _one_by_one(
    client: Client, ref: hsm_pb2.KeyRef, algorithm: int, digests: Sequence[bytes]
) -> list[Outcome]:
    try:
        return single_outcomes(_rpc(client, single_requests(ref, algorithm, digests)))
    except errors.HwgateError as exc:
        return [exc] * len(digests)


def sign_outcomes(
    client: Client,
    ref: hsm_pb2.KeyRef,
    algorithm: int,
    digests: Sequence[bytes],
    chunk: int = DEFAULT_CHUNK,
) -> list[Outcome]:
    """A signature or an error per digest, in order: batches of *chunk* on one stream,
    a failed batch's items retried one by one for their own outcomes."""
    if not digests:
        return []
    pieces, requests = batch_requests(ref, algorithm, digests, chunk)
    try:
        responses = _rpc(client, requests)
    except errors.HwgateError as exc:
        return [exc] * len(digests)
    out: list[Outcome] = []
    for piece, response in zip(pieces, responses, strict=True):
        signatures = batch_signatures(piece, response)
        out += signatures if signatures is not None else _one_by_one(client, ref, algorithm, piece)
    return out


def sign_many(
    client: Client,
    key: names.KeyRefLike,
    algorithm: names.SignatureAlgorithmLike,
    digests: Iterable[bytes],
    *,
    return_exceptions: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> list[Any]:
    """Sign every digest with one key and algorithm; the signatures in digest order.

    With ``return_exceptions=False`` (the default) the first failed item, in
    digest order, is raised as its :class:`HwgateError` subclass once every item
    has an outcome, with ``item_index`` set to its position; with
    ``return_exceptions=True`` the list holds that exception in the failed
    item's place instead of a signature, and nothing is raised.
    """
    ref, number = names.key_ref(key), names.signature_algorithm(algorithm)
    outcomes = sign_outcomes(client, ref, number, list(digests), chunk)
    return raise_first(outcomes, return_exceptions)


class _Waiter:
    """One request on a :class:`StreamLink`, answered by the link's reader thread."""

    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: Any = None  # the SignStreamResponse, or the HwgateError of the stream


class StreamLink:
    """One long-lived SignStream shared by a process's threads.

    A sync gRPC streaming call costs a thread and a stream set-up on each side;
    a message on an open stream costs little more than its bytes. Requests go in
    through a queue the call's request iterator reads; a reader thread matches
    responses to waiters by request_id. When the stream ends (the daemon restarts,
    the channel closes), every waiting request gets that error and the next
    request opens a new stream.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # The open stream's request feed and its unanswered requests (each stream has
        # its own: a stream that ends fails only what was sent on it).
        self._queue: queue.SimpleQueue[hsm_pb2.SignStreamRequest | None] | None = None
        self._pending: dict[int, _Waiter] = {}

    def exchange(self, requests: list[hsm_pb2.SignStreamRequest]) -> list[Any]:
        """The response (or the stream's HwgateError) for each request, in order."""
        waiters = []
        with self._lock:
            if self._queue is None:
                self._open()
            assert self._queue is not None
            for request in requests:
                request.request_id = next(self._ids)
                waiter = self._pending[request.request_id] = _Waiter()  # this stream's
                waiters.append(waiter)
                self._queue.put(request)
        for waiter in waiters:
            waiter.done.wait()
        return [w.response for w in waiters]

    def close(self) -> None:
        with self._lock:
            if self._queue is not None:
                self._queue.put(None)
                self._queue = None

    def _open(self) -> None:
        feed: queue.SimpleQueue[hsm_pb2.SignStreamRequest | None] = queue.SimpleQueue()

        def requests() -> Iterator[hsm_pb2.SignStreamRequest]:
            while (request := feed.get()) is not None:
                yield request

        call = self._client.hsm.SignStream(requests(), metadata=self._client.metadata or None)
        self._queue = feed
        pending: dict[int, _Waiter] = {}
        self._pending = pending
        threading.Thread(
            target=self._read, args=(call, feed, pending), name="hwgate-sign-stream", daemon=True
        ).start()

    def _read(self, call: Any, feed: queue.SimpleQueue[Any], pending: dict[int, _Waiter]) -> None:
        error: errors.HwgateError
        try:
            for response in call:
                with self._lock:
                    waiter = pending.pop(response.request_id, None)
                if waiter is not None:
                    waiter.response = response
                    waiter.done.set()
            error = errors.HwgateError(grpc.StatusCode.UNAVAILABLE, "the stream ended", "", {})
        except grpc.RpcError as err:
            error = errors.from_rpc_error(err)
        with self._lock:
            if self._queue is feed:
                self._queue = None
            feed.put(None)  # ends the request iterator
            stranded = list(pending.values())
            pending.clear()
        for waiter in stranded:
            waiter.response = error
            waiter.done.set()


class _Item:
    """One sign() call: its digest, its outcome, and the event that wakes its thread.

    ``outcome`` is set, and ``wake`` set, under the lane's lock. A thread clears
    its own ``wake`` under that lock before it waits, so a wake-up given after
    the check it just made is never lost."""

    __slots__ = ("digest", "outcome", "wake")

    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        self.outcome: Outcome | BaseException | None = None
        self.wake = threading.Event()


class _Lane:
    """The calls of one (key, algorithm): requests on the wire, callers waiting.

    Every change is made under ``lock``, and only the callers it concerns are
    woken (each by its own event): the callers of an answered batch, the caller
    that now collects the next one, the collector whose batch another caller
    took. Waking every waiting thread on every change (a Condition's
    notify_all) cost 8 threads O(8) wake-ups per caller, each a GIL hand-off:
    it was the client's largest cost per coalesced signature."""

    __slots__ = ("expected", "gathering", "in_flight", "lock", "waiting")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.waiting: list[_Item] = []
        self.gathering: _Item | None = None  # the caller collecting the next batch
        self.expected = 1  # callers in the last round: the next batch waits for them


class CoalescingSigner:
    """A :class:`hwgate.remote_key.Signer` that merges concurrent signs into batches.

    Thread-safe; one per client (``Client.hsm_key()`` shares it across keys).
    ``max_in_flight``: requests of one key on the wire at once; ``max_batch``:
    digests per batch; ``gather_window``: how long (seconds) the sender of a
    batch that follows another waits for the callers of the previous batch to
    come back (they are usually a loop's next iteration): without it, batches
    of concurrent callers split into a lone call and the rest. A caller waits
    for others only right after a batch of several: a lone caller pays at most
    one window, once, after a burst; in steady single use, nothing.
    """

    def __init__(
        self,
        client: Client,
        *,
        max_in_flight: int = 1,
        max_batch: int = 256,
        gather_window: float = 0.002,
    ) -> None:
        self._client = client
        self._link = StreamLink(client)
        self._gather_window = gather_window
        self._max_in_flight = max(1, max_in_flight)
        self._max_batch = max(1, min(max_batch, MAX_BATCH))
        self._lanes: dict[tuple[bytes, int], _Lane] = {}
        self._lanes_lock = threading.Lock()

    def get_public_key(self, key: hsm_pb2.KeyRef) -> hsm_pb2.GetPublicKeyResponse:
        return self._client.get_public_key(key)  # type: ignore[no-any-return]

    def sign(
        self, key: hsm_pb2.KeyRef, algorithm: str, *, digest: bytes = b"", data: bytes = b""
    ) -> bytes:
        """The signature of *digest* (HMAC *data* goes straight to a unary Sign)."""
        if data or not digest:
            return self._client.sign(key, algorithm, data=data)  # type: ignore[no-any-return]
        number = names.signature_algorithm(algorithm)
        lane = self._lane(key, number)
        item = _Item(digest)
        batch = self._join(lane, item)
        if batch is not None:
            outcomes: Sequence[Outcome | BaseException] = ()
            try:
                outcomes = self._send(key, number, batch)
            except BaseException as exc:  # a bug or an interrupt: no waiter may hang on it
                outcomes = [exc] * len(batch)
                raise
            finally:
                self._hand_on(lane, batch, outcomes)
        outcome = item.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome

    def _join(self, lane: _Lane, item: _Item) -> list[_Item] | None:
        """The batch this caller must send, or None once another caller's batch
        answered it. Takes the lane's lock; waits on the caller's own event."""
        with lane.lock:
            if lane.gathering is not None:  # a batch is being collected: join it
                lane.waiting.append(item)
                if len(lane.waiting) + 1 >= lane.expected:
                    return self._take(lane)  # the last one expected sends it, no hand-off
            elif lane.in_flight < self._max_in_flight:
                lane.in_flight += 1
                if lane.expected <= 1:
                    return [item]  # alone: straight out
                lane.gathering = item  # the last round was concurrent: collect it
            else:
                lane.waiting.append(item)
        while True:
            with lane.lock:
                if item.outcome is not None:
                    return None
                if lane.gathering is item:
                    break
                item.wake.clear()
            item.wake.wait()
        return self._gather(lane, item)

    def _gather(self, lane: _Lane, me: _Item) -> list[_Item] | None:
        """Wait up to ``gather_window`` for the last round's callers; then send what
        came, unless the last of them took the batch and sent it."""
        deadline = time.monotonic() + self._gather_window
        while True:
            with lane.lock:
                if lane.gathering is me:
                    left = deadline - time.monotonic()
                    if left <= 0 or len(lane.waiting) + 1 >= lane.expected:
                        return self._take(lane)
                elif me.outcome is not None:  # in the batch the last caller sent
                    return None
                else:
                    left = None
                me.wake.clear()
            me.wake.wait(left)

    def _take(self, lane: _Lane) -> list[_Item]:
        """(Lock held.) The gatherer's batch: the gatherer and those who joined it.
        When a joiner takes it, the gatherer is woken to wait for its answer instead."""
        gatherer = lane.gathering
        assert gatherer is not None
        take = self._max_batch - 1
        batch = [gatherer, *lane.waiting[:take]]
        del lane.waiting[:take]
        lane.gathering = None
        gatherer.wake.set()
        return batch

    def _lane(self, key: hsm_pb2.KeyRef, algorithm: int) -> _Lane:
        name = (key.SerializeToString(deterministic=True), algorithm)
        lane = self._lanes.get(name)
        if lane is None:
            with self._lanes_lock:
                lane = self._lanes.setdefault(name, _Lane())
        return lane

    def _hand_on(
        self, lane: _Lane, batch: Sequence[_Item], outcomes: Sequence[Outcome | BaseException]
    ) -> None:
        """After a send: answer its callers (each woken); then the next batch.

        The sender returns as soon as its own item is done. If callers waited
        meanwhile, the first of them collects the next batch (its thread was idle
        anyway), waiting briefly for this round's callers, who are likely to call
        again at once (a loop's next iteration); if none waited, the next caller
        to arrive collects. After a lone call, nobody waits for anyone."""
        with lane.lock:
            for item, outcome in zip(batch, outcomes, strict=True):
                item.outcome = outcome
                item.wake.set()
            lane.expected = min(self._max_batch, len(batch) + len(lane.waiting))
            if lane.waiting and lane.gathering is None:
                lane.gathering = lane.waiting.pop(0)
                lane.gathering.wake.set()
            else:
                lane.in_flight -= 1

    def _send(self, key: hsm_pb2.KeyRef, algorithm: int, batch: list[_Item]) -> list[Outcome]:
        """One request for *batch*: every item's outcome (an error too), in order."""
        if len(batch) == 1:
            try:
                return [self._client.sign(key, algorithm, digest=batch[0].digest)]
            except errors.HwgateError as exc:
                return [exc]
        return self._over_link(key, algorithm, [i.digest for i in batch])

    def _over_link(
        self, ref: hsm_pb2.KeyRef, algorithm: int, digests: list[bytes]
    ) -> list[Outcome]:
        """*digests* as one digest_batch on the shared stream; a failed batch item by item."""
        _, (request,) = batch_requests(ref, algorithm, digests, len(digests))
        (response,) = self._link.exchange([request])
        if isinstance(response, errors.HwgateError):
            return [response] * len(digests)
        signatures = batch_signatures(digests, response)
        if signatures is not None:
            return list(signatures)
        responses = self._link.exchange(single_requests(ref, algorithm, digests))
        return [
            r if isinstance(r, errors.HwgateError) else single_outcomes([r])[0] for r in responses
        ]

    def close(self) -> None:
        """End the shared stream (``Client.close()`` does it by closing the channel)."""
        self._link.close()
