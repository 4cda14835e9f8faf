"""DescribeCache: descriptions used for authorization expire after the TTL (issue 16 item 6).

The clock is injected, so expiry is tested without sleeping.
"""

from __future__ import annotations

from hwgated.hsm.describe_cache import DescribeCache
from hwgated.hsm.keyref import KeyClass, KeyRef
from hwgated.hsm.types import KeyAlgorithm, KeyInfo

CLASSES = (KeyClass.PRIVATE, KeyClass.SECRET)
REF = (KeyRef(id=b"\x01"), CLASSES)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(label: str) -> KeyInfo:
    return KeyInfo(
        label=label,
        id_hex="01",
        key_class=KeyClass.PRIVATE,
        key_type=KeyAlgorithm.EC,
        size_bits=256,
        curve="P-256",
        usages=frozenset(),
        sensitive=True,
        extractable=False,
        local=True,
    )


def test_an_entry_is_served_until_the_ttl_then_dropped() -> None:
    clock = Clock()
    cache = DescribeCache(30.0, clock=clock)
    cache.put(REF, info("a"))
    clock.now += 29.9
    assert cache.get(REF) == info("a")
    clock.now += 0.1
    assert cache.get(REF) is None
    assert len(cache) == 0  # an expired entry does not linger


def test_the_ttl_runs_from_the_last_store_not_the_first() -> None:
    clock = Clock()
    cache = DescribeCache(10.0, clock=clock)
    cache.put(REF, info("a"))
    clock.now += 8
    cache.put(REF, info("b"))  # described again (e.g. after the old entry expired)
    clock.now += 8
    assert cache.get(REF) == info("b")


def test_a_zero_ttl_stores_nothing() -> None:
    cache = DescribeCache(0.0, clock=Clock())
    cache.put(REF, info("a"))
    assert cache.get(REF) is None and len(cache) == 0


def test_keys_differ_by_classes_as_well_as_reference() -> None:
    cache = DescribeCache(30.0, clock=Clock())
    cache.put(REF, info("a"))
    assert cache.get((KeyRef(id=b"\x01"), (KeyClass.PUBLIC,))) is None
    assert cache.get((KeyRef(label="a"), CLASSES)) is None


def test_clear_forgets_everything() -> None:
    cache = DescribeCache(30.0, clock=Clock())
    cache.put(REF, info("a"))
    cache.clear()
    assert cache.get(REF) is None


def test_the_cache_is_bounded() -> None:
    cache = DescribeCache(30.0, max_entries=4, clock=Clock())
    for n in range(10):
        cache.put((KeyRef(label=f"k{n}"), CLASSES), info(f"k{n}"))
        assert len(cache) <= 4
    assert cache.get((KeyRef(label="k9"), CLASSES)) == info("k9")
    cache.put((KeyRef(label="k9"), CLASSES), info("k9"))  # a refresh never empties it
    assert cache.get((KeyRef(label="k9"), CLASSES)) == info("k9")
