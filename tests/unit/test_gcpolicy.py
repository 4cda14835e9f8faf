"""The daemon freezes its start-up heap once ready (hwgated.ops.gcpolicy)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hwgated.ops import gcpolicy


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Put the interpreter's collector back as it was."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("gc_state")
def test_start_up_heap_is_frozen_and_young_collections_are_rarer() -> None:
    _, middle, old = gc.get_threshold()
    survivor = [object()]  # a container alive at start-up
    gcpolicy.freeze_startup_heap()
    assert gc.get_freeze_count() > 0
    assert not gc.is_tracked(survivor) or all(survivor is not o for o in gc.get_objects())
    assert gc.get_threshold() == (gcpolicy.YOUNG_THRESHOLD, middle, old)


@pytest.mark.usefixtures("gc_state")
def test_cycles_made_after_the_freeze_are_still_collected() -> None:
    gcpolicy.freeze_startup_heap()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    del a, b
    assert gc.collect() >= 2
