"""The worker wire format (issue 14 item 11): a fixed schema, never pickle.

Pure tests of ``hwgated.hsm.wire`` (hypothesis round trips, hostile frames),
then one through a real pool: a worker that sends a frame outside the schema,
even one that pickle would run, is killed and replaced, and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
from hsm_support import LoopThread, eventually
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgated.hsm import (
    DerivedKey,
    HsmPool,
    HsmWorkerLost,
    KeyAlgorithm,
    KeyClass,
    KeyInfo,
    KeyRef,
    KeyUsage,
    PoolState,
    SignAlgorithm,
)
from hwgated.hsm.errors import InvalidDigest, error_from_wire, error_to_wire
from hwgated.hsm.wire import MAX_DEPTH, DecodeError, FrameDecoder, decode, encode, encode_value
from hwgated.hsm.worker_init import WorkerInit

texts = st.text(max_size=20)
opt = st.none
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    texts,
    st.binary(max_size=40),
    st.binary(max_size=40).map(bytearray),
    st.sampled_from(list(SignAlgorithm)),
    st.sampled_from(list(KeyClass)),
)
refs = st.builds(
    KeyRef,
    label=st.one_of(opt(), texts),
    id=st.binary(min_size=1, max_size=8),
    key_class=st.one_of(opt(), st.sampled_from(list(KeyClass))),
    token=st.one_of(opt(), texts),
    token_serial=st.one_of(opt(), texts),
)
infos = st.builds(
    KeyInfo,
    label=texts,
    id_hex=texts,
    key_class=st.sampled_from(list(KeyClass)),
    key_type=st.sampled_from(list(KeyAlgorithm)),
    size_bits=st.one_of(opt(), st.integers(0, 8192)),
    curve=st.one_of(opt(), texts),
    usages=st.frozensets(st.sampled_from(list(KeyUsage))),
    sensitive=st.one_of(opt(), st.booleans()),
    extractable=st.one_of(opt(), st.booleans()),
    local=st.one_of(opt(), st.booleans()),
    token_object=st.booleans(),
)
records = st.one_of(
    refs,
    infos,
    st.builds(WorkerInit, st.text(), st.one_of(opt(), texts), st.one_of(opt(), texts)),
)
values = st.recursive(
    st.one_of(scalars, records),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(texts, inner, max_size=4),
    ),
    max_leaves=20,
)


@given(values)
@settings(max_examples=300, deadline=None)
def test_every_schema_value_round_trips(value: Any) -> None:
    (decoded,) = FrameDecoder().feed(encode(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_derived_key_value_comes_back_as_a_wipeable_bytearray() -> None:
    key = DerivedKey(KeyRef(label="k", id=b"\x01"), 32, bytearray(os.urandom(32)))
    decoded = decode(encode_value(key))
    assert isinstance(decoded.value, bytearray) and decoded.value == key.value
    assert decoded.ref == key.ref and decoded.key_length == 32


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_random_bytes_decode_or_raise_decode_error(body: bytes) -> None:
    # Anything but DecodeError (TypeError, IndexError, MemoryError...) fails the test.
    with contextlib.suppress(DecodeError):
        decode(body)


@given(values, st.data())
@settings(max_examples=200, deadline=None)
def test_truncated_frames_raise_decode_error(value: Any, data: st.DataObject) -> None:
    body = encode_value(value)
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(DecodeError):
        decode(body[:cut])


def _sized(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


def _nested(depth: int) -> bytes:
    return b"l\x00\x00\x00\x01" * depth + b"N"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"Z", id="unknown tag"),
        pytest.param(b"b" + struct.pack("!I", 2**31) + b"xx", id="length past the end"),
        pytest.param(b"l" + struct.pack("!I", 2**32 - 1), id="count past the end"),
        pytest.param(b"d\x00\x00\x00\x01\x00\x00\x00\x09ab", id="dict key past the end"),
        pytest.param(b"s\x00\x00\x00\x02\xff\xfe", id="bad utf-8"),
        pytest.param(b"NN", id="trailing bytes"),
        pytest.param(b"E\x02osx", id="enum outside the schema"),
        pytest.param(b"E\x0dSignAlgorithms\x00\x00\x00\x02MD", id="enum value outside"),
        pytest.param(b"R\x05Popen" + _sized(b"\x00"), id="record outside the schema"),
        pytest.param(b"R\x06KeyRef" + _sized(b"\x05NNNNN"), id="record breaking its invariant"),
        pytest.param(b"R\x06KeyRef" + _sized(b"\x02NN"), id="record field count"),
        pytest.param(b"R\x06KeyRef" + _sized(b"\x05NNNNNN"), id="record length"),
        pytest.param(b"R\x06KeyRef" + _sized(b"\x05i" + bytes(8) + b"NNNN"), id="field type"),
        pytest.param(b"R\x06KeyRef\xff\xff\xff\xff\x05", id="record size past the end"),
        pytest.param(_nested(MAX_DEPTH + 1), id="deep nesting"),
        pytest.param(_nested(100_000), id="very deep nesting"),
        pytest.param(pickle.dumps(("x",)), id="a pickle"),
    ],
)
def test_hostile_frames_raise_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(body)


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert decode(_nested(MAX_DEPTH)) is not None


def test_oversized_frame_header_is_refused_before_reading_it() -> None:
    with pytest.raises(DecodeError):
        FrameDecoder().feed(struct.pack("!I", 2**31) + b"x")


def test_values_outside_the_schema_are_not_sent() -> None:
    for value in (1.5, {1: "x"}, object(), 2**64, {"s"}):
        with pytest.raises(TypeError):
            encode(value)


def test_errors_cross_as_data() -> None:
    error = InvalidDigest("bad length", expected_length=32)
    payload = decode(encode_value(error_to_wire(error)))
    assert payload == {
        "reason": "INVALID_DIGEST",
        "message": "bad length",
        "fields": {"expected_length": 32},
    }
    rebuilt = error_from_wire(payload)
    assert type(rebuilt) is InvalidDigest and rebuilt.fields == {"expected_length": 32}
    for bad in ((1, 2), {"reason": 1, "message": "", "fields": {}}, {"reason": "X"}):
        with pytest.raises(ValueError):
            error_from_wire(bad)


class _RunsCode:
    """A pickle of this runs ``touch <path>`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


DIGEST = hashlib.sha256(b"wire").digest()


@pytest.mark.parametrize("kind", ["pickle", "truncated", "wrong shape"])
def test_a_worker_sending_garbage_is_replaced_and_nothing_runs(
    own_pool: Any, loop_thread: LoopThread, tmp_path: Path, kind: str
) -> None:
    pool: HsmPool = own_pool(workers=1, pipeline_depth=2)
    (victim,) = pool.worker_pids()
    marker = tmp_path / "ran"
    evil = pickle.dumps((1, True, _RunsCode(marker)))
    frames = {
        "pickle": struct.pack("!I", len(evil)) + evil,
        "truncated": struct.pack("!I", 3) + b"tAAA",
        "wrong shape": encode(("not", "a", "reply", 4)),
    }

    async def scenario() -> None:
        channel = pool._slots[0]  # the parent's end of the worker's pipe
        assert channel is not None
        pending = asyncio.ensure_future(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))
        await asyncio.sleep(0)  # let the request reach the worker
        # What a worker compromised through its PKCS#11 module could write to its pipe:
        channel.data_received(frames[kind])
        with pytest.raises(HsmWorkerLost):
            await pending
        await eventually(lambda: victim not in pool.worker_pids(), 10, "the worker to go")
        await eventually(lambda: pool.state is PoolState.READY, 30, "a replacement worker")

    loop_thread.run(scenario())
    assert not marker.exists()
    assert loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))
