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

import threading
from collections.abc import Iterable, Sequence
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


class _Item:
    """One waiting sign() call."""

    __slots__ = ("batch", "digest", "done", "outcome")

    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        self.done = threading.Event()
        self.outcome: Outcome | BaseException | None = None
        self.batch: list[_Item] | None = None  # set when this caller must send the next batch


class _Lane:
    """The calls of one (key, algorithm): how many requests are out, who waits."""

    __slots__ = ("in_flight", "lock", "waiting")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.waiting: list[_Item] = []


class CoalescingSigner:
    """A :class:`hwgate.remote_key.Signer` that merges concurrent signs into batches.

    Thread-safe; one per client (``Client.hsm_key()`` shares it across keys).
    ``max_in_flight``: requests of one key on the wire at once (2 keeps the
    daemon's two default workers busy while the next batch fills);
    ``max_batch``: digests per batch.
    """

    def __init__(self, client: Client, *, max_in_flight: int = 2, max_batch: int = 256) -> None:
        self._client = client
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
        with lane.lock:
            if lane.in_flight < self._max_in_flight:
                lane.in_flight += 1
                batch: list[_Item] | None = [item]
            else:
                lane.waiting.append(item)
                batch = None
        if batch is None:
            item.done.wait()
            batch = item.batch  # woken to send the next batch (it holds this item)
        if batch is not None:
            try:
                self._send(key, number, batch)
            except BaseException as exc:  # a bug or an interrupt: no waiter may hang on it
                for other in batch:
                    if other.outcome is None:
                        other.outcome = exc
                raise
            finally:
                for other in batch:
                    if other is not item:
                        other.done.set()
                self._hand_on(lane)
        outcome = item.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome

    def _lane(self, key: hsm_pb2.KeyRef, algorithm: int) -> _Lane:
        name = (key.SerializeToString(deterministic=True), algorithm)
        lane = self._lanes.get(name)
        if lane is None:
            with self._lanes_lock:
                lane = self._lanes.setdefault(name, _Lane())
        return lane

    def _send(self, key: hsm_pb2.KeyRef, algorithm: int, batch: list[_Item]) -> None:
        """One request for *batch*; every item gets its outcome (an error too)."""
        if len(batch) == 1:
            try:
                outcomes: list[Outcome] = [
                    self._client.sign(key, algorithm, digest=batch[0].digest)
                ]
            except errors.HwgateError as exc:
                outcomes = [exc]
        else:
            outcomes = sign_outcomes(
                self._client, key, algorithm, [i.digest for i in batch], self._max_batch
            )
        for it, outcome in zip(batch, outcomes, strict=True):
            it.outcome = outcome

    def _hand_on(self, lane: _Lane) -> None:
        """After a send: the calls that waited meanwhile become the next batch.

        The sender returns as soon as its own item is done: the first waiter is
        woken to send the next batch (its thread was idle anyway), so no caller's
        latency grows by other callers' batches."""
        with lane.lock:
            if not lane.waiting:
                lane.in_flight -= 1
                return
            nxt = lane.waiting[: self._max_batch]
            del lane.waiting[: self._max_batch]
        nxt[0].batch = nxt
        nxt[0].done.set()
