"""Caller key references are bounded in size, so what the HSM layer remembers of them
stays small whatever callers send (issue 25).

The pool caches ``describe`` answers by reference (up to 1024) and the worker wire
memoizes reference encodings (up to 256): bounded counts, but an entry was as big as
the caller made it. A URI's ``serial`` is not checked when the config names no token
serial, so distinct huge URIs naming one real key all resolved and were all kept.
"""

from __future__ import annotations

import gc
from collections import Counter

import pytest

from hwgate.v1 import hsm_pb2
from hwgated import errors
from hwgated.api import hsm_convert
from hwgated.api.hsm_access import KeyAccess
from hwgated.api.hsm_convert import MAX_ID_BYTES, MAX_LABEL_LENGTH, MAX_URI_LENGTH
from hwgated.auth.identity import Caller, set_caller
from hwgated.auth.policy import Policy, PolicyHolder
from hwgated.config import PolicyConfig, ResourceRule, RoleConfig
from hwgated.hsm import HsmPool, KeyRef

URI_HEAD = "pkcs11:object=ec-p256;type=private;serial="
# What the HSM layer may keep: 1024 described + 256 encoded references, each at most
# a bounded URI (a generous ceiling: the two caches mostly hold the same objects).
RETAINED_CEILING = (1024 + 256) * MAX_URI_LENGTH


@pytest.mark.parametrize(
    ("make", "limit", "field"),
    [
        (lambda n: hsm_pb2.KeyRef(label="k" * n), MAX_LABEL_LENGTH, "key.label"),
        (lambda n: hsm_pb2.KeyRef(id=b"\x01" * n), MAX_ID_BYTES, "key.id"),
        (lambda n: hsm_pb2.KeyRef(uri=URI_HEAD.ljust(n, "7")), MAX_URI_LENGTH, "key.uri"),
    ],
)
def test_reference_size_limit(make, limit: int, field: str) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(hsm_convert.key_ref(make(limit)), KeyRef)
    with pytest.raises(errors.InvalidArgument) as err:
        hsm_convert.key_ref(make(limit + 1))
    assert err.value.metadata == {"field": field, "max": str(limit)}


def test_base_key_field_is_named() -> None:
    with pytest.raises(errors.InvalidArgument) as err:
        hsm_convert.key_ref(hsm_pb2.KeyRef(label="k" * (MAX_LABEL_LENGTH + 1)), "base_key")
    assert err.value.metadata["field"] == "base_key.label"


def retained_reference_chars() -> int:
    """Characters/bytes held by every live KeyRef in this process (pool and wire caches)."""
    gc.collect()
    return sum(
        len(ref.label or "")
        + len(ref.id or b"")
        + len(ref.token or "")
        + len(ref.token_serial or "")
        for ref in gc.get_objects()
        if type(ref) is KeyRef
    )


def test_distinct_references_keep_bounded_memory(pool: HsmPool, loop_thread) -> None:  # type: ignore[no-untyped-def]
    policy = PolicyConfig(
        roles={"admin": RoleConfig(allow=("*",))}, keys=(ResourceRule("*", ("admin",)),)
    )
    access = KeyAccess({"test": pool}, PolicyHolder(Policy(policy)))

    async def resolve_many(length: int, count: int) -> Counter[str]:
        set_caller(Caller(role="admin", subject="test", listener="test"))
        outcomes: Counter[str] = Counter()
        for i in range(count):
            uri = f"{URI_HEAD}{i:06d}".ljust(length, "s")
            try:
                key = await access.resolve(hsm_pb2.KeyRef(uri=uri))
            except errors.InvalidArgument:
                outcomes["refused"] += 1
            else:
                outcomes[key.label] += 1
        return outcomes

    before = retained_reference_chars()
    oversized = loop_thread.run(resolve_many(64 * 1024, 200))
    # The old code resolved these (the serial is not checked) and kept all 200: 12.8 MB.
    assert retained_reference_chars() - before < 64 * 1024
    assert oversized == {"refused": 200}
    # More distinct references at the limit than both caches hold: they all resolve,
    # and what stays is bounded by the caches' sizes, not by the number of calls.
    at_limit = loop_thread.run(resolve_many(MAX_URI_LENGTH, 1400))
    assert at_limit == {"ec-p256": 1400}
    assert retained_reference_chars() - before <= RETAINED_CEILING
