"""ListKeys pages (hwgated.api.key_pages): the page token codec and the page cut.

The codec must round-trip every cursor it can make and refuse everything else
(garbage, tampered, over-long, another filter) with INVALID_ARGUMENT naming
page_token, never another exception. The cut is checked against a model: keys
made and deleted between pages are never listed twice and keys present
throughout are listed exactly once.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgate.v1 import common_pb2, hsm_pb2
from hwgated.api import key_pages as kp
from hwgated.errors import InvalidArgument

FILTER = kp.ListFilter("testbed", "svc-*")

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
positions = st.tuples(
    st.binary(max_size=kp.MAX_TOKEN_NAME_BYTES),
    st.binary(max_size=kp.MAX_LABEL_BYTES),
    st.binary(max_size=kp.MAX_ID_BYTES),
    st.integers(0, 0xFFFF),
    st.binary(min_size=kp.TWIN_DIGEST_BYTES, max_size=kp.TWIN_DIGEST_BYTES),
)
cursors = st.builds(
    kp.Cursor, positions, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
).filter(lambda c: c.ties + c.extra > 0)
filters = st.builds(kp.ListFilter, texts, texts)


def refused(text: str, list_filter: kp.ListFilter = FILTER) -> bool:
    with pytest.raises(InvalidArgument) as err:
        kp.decode(text, list_filter)
    assert err.value.fields == {"field": "page_token"}
    return True


@settings(max_examples=300)
@given(cursors, filters)
def test_every_cursor_round_trips(cursor: kp.Cursor, list_filter: kp.ListFilter) -> None:
    token = kp.encode(cursor, list_filter)
    assert len(token) <= kp.MAX_PAGE_TOKEN_LENGTH
    assert token.isascii() and "=" not in token and "+" not in token and "/" not in token
    assert kp.decode(token, list_filter) == cursor


@settings(max_examples=200)
@given(cursors, filters, filters)
def test_a_token_is_bound_to_its_filter(
    cursor: kp.Cursor, first: kp.ListFilter, second: kp.ListFilter
) -> None:
    token = kp.encode(cursor, first)
    if second != first:
        assert refused(token, second)


def test_the_filter_fields_do_not_run_into_each_other() -> None:
    cursor = kp.Cursor(kp.position(hsm_pb2.KeyInfo(token="t", label="a")), 1)
    token = kp.encode(cursor, kp.ListFilter("ab", "c"))
    assert refused(token, kp.ListFilter("a", "bc"))


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_random_bytes_are_refused(raw: bytes) -> None:
    assert refused(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_random_text_is_refused(text: str) -> None:
    if text:  # empty = no token, handled by the servicer (first page)
        assert refused(text)


@settings(max_examples=300)
@given(cursors, st.data())
def test_any_changed_character_is_refused(cursor: kp.Cursor, data: st.DataObject) -> None:
    token = kp.encode(cursor, FILTER)
    index = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    char = data.draw(st.sampled_from(alphabet.replace(token[index], "")))
    assert refused(token[:index] + char + token[index + 1 :])


@settings(max_examples=100)
@given(cursors, st.integers(1, 8))
def test_cut_and_extended_tokens_are_refused(cursor: kp.Cursor, n: int) -> None:
    token = kp.encode(cursor, FILTER)
    assert refused(token[:-n]) if n < len(token) else True
    assert refused(token + "A" * n)


def test_over_long_and_malformed_tokens_are_refused() -> None:
    assert refused("A" * (kp.MAX_PAGE_TOKEN_LENGTH + 1))
    assert refused("A" * 10_000_000)
    token = kp.encode(kp.Cursor(kp._START, 0, 1), FILTER)
    for bad in (token + "=", token + "==", " " + token, "+" + token[1:], token[:-1] + "/", "\x00"):
        assert refused(bad)


def test_a_token_of_another_version_is_refused() -> None:
    token = kp.encode(kp.Cursor(kp._START, 0, 1), FILTER)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[0] = 2
    body = bytes(raw[: -kp.TAG_BYTES])
    forged = body + kp._tag(body, FILTER)  # a well-tagged token of an unknown version
    assert refused(base64.urlsafe_b64encode(forged).rstrip(b"=").decode())


def test_the_largest_cursor_fits_the_limit() -> None:
    limits = (kp.MAX_TOKEN_NAME_BYTES, kp.MAX_LABEL_BYTES, kp.MAX_ID_BYTES)
    place = (*(b"\xff" * n for n in limits), 0xFFFF, b"\xff" * kp.TWIN_DIGEST_BYTES)
    token = kp.encode(kp.Cursor(place, 2**32 - 1, 2**32 - 1), FILTER)  # type: ignore[arg-type]
    assert len(token) == kp.MAX_PAGE_TOKEN_LENGTH
    assert kp.decode(token, FILTER).position == place


@pytest.mark.parametrize(
    ("asked", "given"), [(0, 100), (1, 1), (3, 3), (1000, 1000), (1001, 1000), (2**31 - 1, 1000)]
)
def test_page_size_default_and_maximum(asked: int, given: int) -> None:
    assert kp.page_size(asked) == given


@pytest.mark.parametrize("asked", [-1, -(2**31)])
def test_a_negative_page_size_is_refused(asked: int) -> None:
    with pytest.raises(InvalidArgument) as err:
        kp.page_size(asked)
    assert err.value.fields == {"field": "page_size"}


# --- the cut ---------------------------------------------------------------------------


def key(token: str, label: str, key_id: bytes, cls: int = 1, algorithm: int = 0) -> hsm_pb2.KeyInfo:
    return hsm_pb2.KeyInfo(
        token=token,
        label=label,
        id=key_id,
        key_class=cls,
        algorithm=algorithm,  # type: ignore[arg-type]
    )


def identity(info: hsm_pb2.KeyInfo) -> bytes:
    return info.SerializeToString(deterministic=True)


keys = st.builds(
    key,
    st.sampled_from(["a", "b", "tok"]),
    st.sampled_from(["", "k1", "k2", "k3", "x" * (kp.MAX_LABEL_BYTES + 1)]),
    st.sampled_from([b"", b"\x01", b"\x02"]),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([0, common_pb2.KEY_ALGORITHM_AES_256]),
)


def page_through(lists: list[list[hsm_pb2.KeyInfo]], size: int) -> list[hsm_pb2.KeyInfo]:
    """Every page in turn, page n cut from lists[min(n, last)]; the keys in page order."""
    seen: list[hsm_pb2.KeyInfo] = []
    cursor = None
    for n in range(10_000):
        page = kp.cut(lists[min(n, len(lists) - 1)], size, cursor, FILTER)
        assert len(page.keys) <= size
        seen.extend(page.keys)
        if not page.next_page_token:
            return seen
        cursor = kp.decode(page.next_page_token, FILTER)
    raise AssertionError("the token chain did not end")


@settings(max_examples=300)
@given(st.lists(keys, max_size=40), st.integers(1, 7))
def test_pages_of_a_steady_list_are_the_whole_list_in_order(
    infos: list[hsm_pb2.KeyInfo], size: int
) -> None:
    """Twins (exact duplicates) and labels too long for a token included."""
    listed = page_through([infos], size)
    whole = kp.cut(infos, kp.MAX_PAGE_SIZE, None, FILTER)
    assert whole.next_page_token == "" or len(infos) > kp.MAX_PAGE_SIZE
    assert [identity(k) for k in listed] == [identity(k) for k in whole.keys]
    assert sorted(map(identity, listed)) == sorted(map(identity, infos))
    assert [kp.position(k) for k in listed] == sorted(kp.position(k) for k in listed)


carried_keys = keys.filter(lambda k: len(k.label) <= kp.MAX_LABEL_BYTES)


@settings(max_examples=300)
@given(
    st.lists(st.lists(carried_keys, max_size=20, unique_by=identity), min_size=1, max_size=8),
    st.integers(1, 5),
)
def test_keys_made_or_deleted_between_pages(lists: list[list[hsm_pb2.KeyInfo]], size: int) -> None:
    """Each page sees another list: none listed twice; those in every list listed once."""
    listed = [identity(k) for k in page_through(lists, size)]
    assert len(listed) == len(set(listed))
    everywhere = set.intersection(*({identity(k) for k in infos} for infos in lists))
    assert everywhere <= set(listed)
    assert set(listed) <= set.union(*({identity(k) for k in infos} for infos in lists))


def test_an_empty_list_is_one_empty_page() -> None:
    assert kp.cut([], 3, None, FILTER) == kp.Page([], "")


def test_exactly_one_full_page_has_no_next_token() -> None:
    infos = [key("t", f"k{i}", b"") for i in range(3)]
    page = kp.cut(infos, 3, None, FILTER)
    assert len(page.keys) == 3 and page.next_page_token == ""


def test_order_is_token_then_label_then_id() -> None:
    infos = [key("b", "a", b""), key("a", "b", b"\x02"), key("a", "b", b"\x01"), key("a", "c", b"")]
    page = kp.cut(infos, 10, None, FILTER)
    assert [(k.token, k.label, k.id) for k in page.keys] == [
        ("a", "b", b"\x01"),
        ("a", "b", b"\x02"),
        ("a", "c", b""),
        ("b", "a", b""),
    ]


def test_a_deleted_anchor_does_not_cost_the_next_key() -> None:
    infos = [key("t", f"k{i}", b"") for i in range(4)]
    first = kp.cut(infos, 2, None, FILTER)
    cursor = kp.decode(first.next_page_token, FILTER)
    rest = kp.cut([infos[0], infos[2], infos[3]], 2, cursor, FILTER)  # k1, the anchor, gone
    assert [k.label for k in rest.keys] == ["k2", "k3"]


def test_earlier_tokens_are_passed_over() -> None:
    cursor = kp.Cursor(kp.position(key("b", "x", b"")), 1)
    assert cursor.passes("a") and not cursor.passes("b") and not cursor.passes("c")
    assert not kp.Cursor(kp._START, 0, 5).passes("a")
