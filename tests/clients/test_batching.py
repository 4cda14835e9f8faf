"""Client-side batching: Client.sign_many and the coalescing remote key (issue #21)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from clients_support import Gateway
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

import hwgate
import hwgate.aio
from hwgate import names
from hwgate.batching import CoalescingSigner, _Item

KEY = "signer-p256"
ALG = "ecdsa-sha256"


def _public(client: hwgate.Client) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(client.get_public_key(KEY).der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _verifies(public: ec.EllipticCurvePublicKey, signature: bytes, digest: bytes) -> bool:
    try:
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def _digests(n: int, tag: str) -> list[bytes]:
    return [hashlib.sha256(f"{tag}-{i}".encode()).digest() for i in range(n)]


def _batch_sizes(gateway: Gateway, fingerprints: set[str]) -> list[int]:
    """The daemon's own record of how our digests arrived: the number of digests
    per hsm.sign audit record that carries any of *fingerprints*."""
    sizes = []
    for line in (gateway.directory / "audit.jsonl").read_text().splitlines():
        record = json.loads(line)
        prints = set(str(record.get("digest_sha256", "")).split())
        if record.get("action") == "hsm.sign" and prints & fingerprints:
            sizes.append(len(prints))
    return sizes


def test_sign_many_keeps_the_order_across_batches(gateway: Gateway) -> None:
    digests = _digests(300, "order")
    with hwgate.connect(gateway.admin) as client:
        public = _public(client)
        signatures = client.sign_many(KEY, ALG, digests)
    assert len(signatures) == len(digests)
    assert all(_verifies(public, s, d) for s, d in zip(signatures, digests, strict=True))
    # Order, not just membership: a signature never verifies for its neighbour's digest.
    assert not _verifies(public, signatures[0], digests[1])


def test_sign_many_reports_a_bad_item_without_failing_the_others(gateway: Gateway) -> None:
    digests = _digests(6, "item-error")
    digests[3] = b"short"
    with hwgate.connect(gateway.admin) as client:
        public = _public(client)
        outcomes = client.sign_many(KEY, ALG, digests, return_exceptions=True)
        with pytest.raises(hwgate.HwgateError) as raised:
            client.sign_many(KEY, ALG, digests)
    assert isinstance(outcomes[3], hwgate.HwgateError)
    assert outcomes[3].reason == "INVALID_DIGEST"
    assert all(
        _verifies(public, s, d)
        for i, (s, d) in enumerate(zip(outcomes, digests, strict=True))
        if i != 3
    )
    assert raised.value.reason == "INVALID_DIGEST"
    assert raised.value.item_index == 3  # type: ignore[attr-defined]


def test_sign_many_unknown_key_fails_every_item_with_key_not_found(gateway: Gateway) -> None:
    with hwgate.connect(gateway.admin) as client:
        outcomes = client.sign_many(
            "no-such-key", ALG, _digests(3, "nokey"), return_exceptions=True
        )
    assert [type(o) for o in outcomes] == [hwgate.KeyNotFound] * 3


def _wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _queued_calls(gateway: Gateway, digests: list[bytes]) -> dict[int, object]:
    """Each digest signed by its own thread through a CoalescingSigner, all of them
    arriving while the key's requests are on the wire; the outcomes by index."""
    results: dict[int, object] = {}
    with hwgate.connect(gateway.admin) as client:
        signer = CoalescingSigner(client, max_in_flight=1)
        ref = names.key_ref(KEY)
        lane = signer._lane(ref, names.signature_algorithm(ALG))
        with lane.lock:
            lane.in_flight = 1  # as if a request of this key were on the wire

        def call(i: int) -> None:
            try:
                results[i] = signer.sign(ref, ALG, digest=digests[i])
            except hwgate.HwgateError as exc:
                results[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(digests))]
        for t in threads:
            t.start()
        _wait_for(lambda: len(lane.waiting) == len(digests), "the queued callers")
        signer._hand_on(lane, [_Item(b"")], [b""])  # the "request on the wire" finished
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert lane.in_flight == 0 and not lane.waiting
    return results


def _print(digest: bytes) -> str:
    return hashlib.sha256(digest).hexdigest()[:8]


def test_calls_that_wait_go_out_as_one_batch(gateway: Gateway) -> None:
    digests = _digests(5, "coalesce")
    results = _queued_calls(gateway, digests)
    with hwgate.connect(gateway.admin) as client:
        public = _public(client)
    for i, digest in enumerate(digests):
        signature = results[i]
        assert isinstance(signature, bytes) and _verifies(public, signature, digest)
    # The daemon's own record: one hsm.sign for all five digests.
    assert _batch_sizes(gateway, {_print(d) for d in digests}) == [5]


def test_a_bad_digest_in_a_coalesced_batch_fails_only_its_caller(gateway: Gateway) -> None:
    digests = _digests(5, "coalesce-bad")
    digests[2] = b"\x00" * 20  # wrong length for SHA-256: the daemon refuses the whole batch
    results = _queued_calls(gateway, digests)
    with hwgate.connect(gateway.admin) as client:
        public = _public(client)
    bad = results[2]
    assert isinstance(bad, hwgate.HwgateError) and bad.reason == "INVALID_DIGEST"
    good = [i for i in range(5) if i != 2]
    for i in good:
        signature = results[i]
        assert isinstance(signature, bytes) and _verifies(public, signature, digests[i])
    # Each good digest was signed exactly once (the retry went item by item).
    assert sum(_batch_sizes(gateway, {_print(digests[i]) for i in good})) == 4


def test_remote_key_from_many_threads_signs_each_callers_own_data(gateway: Gateway) -> None:
    with hwgate.connect(gateway.admin) as client:
        key = client.hsm_key(KEY)
        public = key.public_key()

        def work(t: int) -> list[tuple[bytes, bytes]]:
            out = []
            for i in range(25):
                data = f"thread {t} item {i}".encode()
                out.append((data, key.sign(data, ec.ECDSA(hashes.SHA256()))))
            return out

        with ThreadPoolExecutor(8) as pool:
            results = [pair for chunk in pool.map(work, range(8)) for pair in chunk]
        lone = key.sign(b"alone", ec.ECDSA(hashes.SHA256()))
    assert len(results) == 200
    for data, signature in results:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))  # raises if wrong
    public.verify(lone, b"alone", ec.ECDSA(hashes.SHA256()))
    lane = next(iter(client._coalescing._lanes.values()))
    assert lane.in_flight == 0 and not lane.waiting  # nothing left behind


def test_async_sign_many_matches_the_blocking_one(gateway: Gateway) -> None:
    digests = _digests(5, "aio")
    digests[1] = b"short"

    async def run() -> list[object]:
        async with hwgate.aio.connect(gateway.admin) as client:
            return await client.sign_many(KEY, ALG, digests, return_exceptions=True)

    outcomes = asyncio.run(run())
    with hwgate.connect(gateway.admin) as client:
        public = _public(client)
    assert isinstance(outcomes[1], hwgate.HwgateError) and outcomes[1].reason == "INVALID_DIGEST"
    for i in (0, 2, 3, 4):
        signature = outcomes[i]
        assert isinstance(signature, bytes) and _verifies(public, signature, digests[i])


def test_the_shared_stream_reopens_after_it_ended(gateway: Gateway) -> None:
    """A StreamLink whose stream ended (closed here; a daemon restart alike) opens a
    new one for the next batch instead of failing or hanging."""
    from hwgate.batching import StreamLink, batch_requests, batch_signatures

    digests = _digests(3, "link")
    with hwgate.connect(gateway.admin) as client:
        public = _public(client)
        link = StreamLink(client)
        ref, alg = names.key_ref(KEY), names.signature_algorithm(ALG)
        for _ in range(2):
            pieces, requests = batch_requests(ref, alg, digests)
            (response,) = link.exchange(requests)
            signatures = batch_signatures(pieces[0], response)
            assert signatures is not None
            assert all(_verifies(public, s, d) for s, d in zip(signatures, digests, strict=True))
            link.close()


def test_a_batch_finishing_beside_a_gatherer_leaves_it_its_batch() -> None:
    """With two requests of a key on the wire, one may finish while a caller is
    already collecting the next batch: the callers waiting then join that batch.
    The old hand-on made one of them the collector instead, and the first
    collector, no longer collecting and in no batch, waited forever (8 threads on
    max_in_flight=2 hung within a second)."""
    signer = CoalescingSigner(None, max_in_flight=2)  # type: ignore[arg-type]  # no call is made
    lane = signer._lane(names.key_ref(KEY), names.signature_algorithm(ALG))
    gatherer, queued = _Item(b"g" * 32), _Item(b"q" * 32)
    with lane.lock:
        lane.in_flight, lane.gathering, lane.waiting = 2, gatherer, [queued]
    signer._hand_on(lane, [_Item(b"o" * 32)], [b"sig"])  # the other request on the wire finished
    assert lane.gathering is gatherer and lane.waiting == [queued]
    assert lane.in_flight == 1  # the finished request's place is free; the gatherer keeps its own
    with lane.lock:
        assert signer._take(lane) == [gatherer, queued]


def test_eight_threads_with_two_batches_in_flight_all_finish(gateway: Gateway) -> None:
    with hwgate.connect(gateway.admin) as client:
        signer = CoalescingSigner(client, max_in_flight=2)
        ref = names.key_ref(KEY)
        public = _public(client)
        signed: list[tuple[bytes, bytes]] = []

        def work(t: int) -> None:
            for digest in _digests(40, f"two-in-flight-{t}"):
                signed.append((digest, signer.sign(ref, ALG, digest=digest)))

        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a caller never got its signature"
        signer.close()
    assert len(signed) == 320
    assert all(_verifies(public, signature, digest) for digest, signature in signed)
