"""A key changed outside the daemon is described again after ``describe_ttl`` (issue 16
item 6).

The pool authorizes key use by the label of the key a reference resolves to and
remembers those descriptions. Before the TTL it remembered them until this pool
itself created or destroyed an object, so a key relabelled or deleted by another
PKCS#11 application was authorized on stale data for the daemon's life. The
change here is made by a separate process with its own session, as such an
application would.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from hsm_support import MODULE, TOKEN_LABEL, USER_PIN, HsmTestToken, LoopThread

from hwgated.hsm import HsmPool, KeyInfo, KeyNotFound, KeyRef, SecretKeySpec


def _change_outside(conf_path: str, key_id: bytes, new_label: str | None) -> int:
    """In a child process: relabel (or, with None, destroy) every object with ``key_id``."""
    os.environ["SOFTHSM2_CONF"] = conf_path
    import pkcs11
    from pkcs11 import Attribute

    tok = pkcs11.lib(MODULE).get_token(token_label=TOKEN_LABEL)
    with tok.open(rw=True, user_pin=USER_PIN) as session:
        objects = list(session.get_objects({Attribute.ID: key_id}))
        for obj in objects:
            if new_label is None:
                obj.destroy()
            else:
                obj[Attribute.LABEL] = new_label
    return len(objects)


def change_outside(token: HsmTestToken, key_id: bytes, new_label: str | None) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as child:
        count = child.apply(_change_outside, (str(token.conf_path), key_id, new_label))
    assert count == 1, f"expected one object with id {key_id.hex()}, changed {count}"


@pytest.fixture
def outside_key(
    own_pool: Callable[..., HsmPool], loop_thread: LoopThread
) -> Iterator[tuple[Callable[..., HsmPool], bytes, str]]:
    """A fresh HMAC key (id, label) made through a throwaway pool; destroyed afterwards."""
    key_id = uuid.uuid4().bytes[:8]
    label = f"ttl-{key_id.hex()}"
    maker = own_pool(workers=1)
    loop_thread.run(maker.generate_secret_key(label, SecretKeySpec.GENERIC_SECRET, id=key_id))
    yield own_pool, key_id, label
    with contextlib.suppress(KeyNotFound):  # the test may have destroyed it
        loop_thread.run(maker.delete_key(KeyRef(id=key_id)))


async def described_until(
    pool: HsmPool, ref: KeyRef, done: Callable[[KeyInfo | None], bool], timeout: float
) -> KeyInfo | None:
    """Describe ``ref`` until ``done`` holds for the answer (None: not found); fail after
    ``timeout`` seconds (a generous "did not stay stale for ever" bound)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info: KeyInfo | None = await pool.describe(ref)
        except KeyNotFound:
            info = None
        if done(info):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"{ref} still described as {info} after {timeout}s")
        await asyncio.sleep(0.05)


def test_a_label_changed_behind_the_daemons_back_is_seen_after_the_ttl(
    outside_key: tuple[Callable[..., HsmPool], bytes, str],
    token: HsmTestToken,
    loop_thread: LoopThread,
) -> None:
    own_pool, key_id, label = outside_key
    pool = own_pool(workers=1, describe_ttl=0.3)
    ref = KeyRef(id=key_id)
    assert loop_thread.run(pool.describe(ref)).label == label  # cached now
    change_outside(token, key_id, "renamed-" + label)
    info = loop_thread.run(
        described_until(pool, ref, lambda i: i is not None and i.label != label, 20)
    )
    assert info is not None and info.label == "renamed-" + label


def test_a_key_deleted_behind_the_daemons_back_is_not_found_after_the_ttl(
    outside_key: tuple[Callable[..., HsmPool], bytes, str],
    token: HsmTestToken,
    loop_thread: LoopThread,
) -> None:
    own_pool, key_id, label = outside_key
    pool = own_pool(workers=1, describe_ttl=0.3)
    ref = KeyRef(id=key_id)
    assert loop_thread.run(pool.describe(ref)).label == label
    change_outside(token, key_id, None)
    assert loop_thread.run(described_until(pool, ref, lambda i: i is None, 20)) is None


def test_within_the_ttl_the_remembered_description_is_used(
    outside_key: tuple[Callable[..., HsmPool], bytes, str],
    token: HsmTestToken,
    loop_thread: LoopThread,
) -> None:
    """The cache still saves the round trip per key use (so the tests above see the
    TTL at work, not a pool that never caches)."""
    own_pool, key_id, label = outside_key
    pool = own_pool(workers=1, describe_ttl=3600)
    ref = KeyRef(id=key_id)
    assert loop_thread.run(pool.describe(ref)).label == label
    change_outside(token, key_id, "renamed-" + label)
    assert loop_thread.run(pool.describe(ref)).label == label


def test_a_zero_ttl_describes_every_time(
    outside_key: tuple[Callable[..., HsmPool], bytes, str],
    token: HsmTestToken,
    loop_thread: LoopThread,
) -> None:
    own_pool, key_id, label = outside_key
    pool = own_pool(workers=1, describe_ttl=0)
    ref = KeyRef(id=key_id)
    assert loop_thread.run(pool.describe(ref)).label == label
    change_outside(token, key_id, "renamed-" + label)
    assert loop_thread.run(pool.describe(ref)).label == "renamed-" + label
