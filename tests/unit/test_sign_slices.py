"""How a SignStream batch is cut into worker round trips (hwgated.api.hsm_stream.slices)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hwgated.api.hsm_stream import MIN_SLICE, SLICE, slices


def test_a_small_batch_is_spread_over_the_workers() -> None:
    # 8 coalesced signatures on a 2-worker token: 4 each, not 8 on one worker.
    inputs = [bytes([i]) * 32 for i in range(8)]
    assert [len(p) for p in slices(inputs, 2)] == [4, 4]
    assert [len(p) for p in slices(inputs, 1)] == [8]


def test_a_big_batch_is_cut_in_slices_as_before() -> None:
    inputs = [b"d" * 32] * 256
    assert [len(p) for p in slices(inputs, 2)] == [SLICE] * 8


@given(count=st.integers(0, 600), workers=st.integers(0, 16))
def test_slices_keep_every_input_in_order_within_the_limits(count: int, workers: int) -> None:
    inputs = [i.to_bytes(2, "big") for i in range(count)]
    parts = slices(inputs, workers)
    assert [x for part in parts for x in part] == inputs
    assert all(0 < len(part) <= SLICE for part in parts)
    if count >= MIN_SLICE:
        assert all(len(part) >= MIN_SLICE for part in parts[:-1])
    if workers:  # no worker waits on a piece bigger than an even share (or MIN_SLICE)
        assert all(len(part) <= max(MIN_SLICE, -(-count // workers)) for part in parts)
