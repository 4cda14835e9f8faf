"""The linear-time glob matcher: fnmatchcase semantics, bounded work, caller bounds (issue 14)."""

from __future__ import annotations

import fnmatch
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwgate_testbed.timing import scaled
from hwgated.errors import InvalidArgument
from hwgated.patterns import (
    MAX_PATTERN_LENGTH,
    MAX_PATTERNS,
    Glob,
    any_match,
    caller_globs,
    glob_match,
)

# Small alphabets make matches, near-misses and every class shape likely.
PATTERN_CHARS = st.sampled_from("ab-]*?[!^\\&~|z")
TEXT_CHARS = st.sampled_from("ab-]z[!^\\&~|\n")


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("", "", True),
        ("a", "", False),
        ("", "*", True),
        ("hwgate.v1.CardService/ListReaders", "hwgate.v1.CardService/*", True),
        ("hwgate.v1.PivService/Sign", "hwgate.v1.CardService/*", False),
        ("signer-1", "signer-*", True),
        ("issuing-ca", "issuing-ca", True),
        ("issuing-ca2", "issuing-ca", False),
        ("abc", "a?c", True),
        ("a\nc", "a?c", True),  # '?' matches a newline, as in fnmatch
        ("abc", "a[a-c]c", True),
        ("adc", "a[!a-c]c", True),
        ("abc", "a[!a-c]c", False),
        ("]", "[]]", True),
        ("a", "[!]]", True),
        ("[", "[", True),  # no closing bracket: a literal
        ("[ab", "[ab", True),
        ("b", "[z-a]", False),  # an empty range matches nothing
        ("b", "[!z-a]", True),
        ("-", "[a-]", True),
        ("x-y", "*-*", True),
        ("aXbXc", "a*b*c", True),
        ("aXbXd", "a*b*c", False),
    ],
)
def test_examples(text: str, pattern: str, expected: bool) -> None:
    assert fnmatch.fnmatchcase(text, pattern) is expected  # the reference agrees
    assert glob_match(text, pattern) is expected


@settings(max_examples=1500, deadline=None)
@given(st.text(TEXT_CHARS, max_size=10), st.text(PATTERN_CHARS, max_size=10))
@example("a", "[a-]]")
@example("-", "[a-c-e]")
@example("b", "[z-a-c]")
def test_same_as_fnmatchcase(text: str, pattern: str) -> None:
    assert glob_match(text, pattern) == fnmatch.fnmatchcase(text, pattern)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=8), st.text(max_size=8))
def test_same_as_fnmatchcase_any_unicode(text: str, pattern: str) -> None:
    assert glob_match(text, pattern) == fnmatch.fnmatchcase(text, pattern)


def test_any_match() -> None:
    assert any_match("reader 1", ["nope", "reader *"])
    assert not any_match("reader 1", [])


def _seconds(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "pattern",
    [
        "[" * 200_000,  # the ListKeys probe (1M there): fnmatch.translate is quadratic, minutes
        "x" + "[" * 12_000,  # the WatchEvents probe: 3 s in fnmatch
        "*a" * 50_000,  # many stars: no backtracking
        "[a-z]" * 20_000,
    ],
)
def test_hostile_patterns_compile_and_match_fast(pattern: str) -> None:
    text = "a" * 10_000
    # A generous "did not hang" bound (stretched on a loaded machine); fnmatch needs
    # seconds to minutes here. 1M "[" took 14 s under stress-ng plus the suite: linear,
    # but too slow a probe for a wall-clock bound.
    assert _seconds(lambda: Glob(pattern).match(text)) < scaled(5)


def test_long_text_against_star_pattern_is_linear() -> None:
    glob = Glob("*a*a*a*a*a*a*b")
    assert _seconds(lambda: glob.match("a" * 200_000)) < scaled(5)
    assert not glob.match("a" * 1000)
    assert glob.match("a" * 1000 + "b")


def test_caller_patterns_bounded() -> None:
    assert [g.pattern for g in caller_globs(["a*", "b?"], "reader_patterns")] == ["a*", "b?"]
    with pytest.raises(InvalidArgument) as too_long:
        caller_globs(["x" * (MAX_PATTERN_LENGTH + 1)], "label_pattern")
    assert too_long.value.metadata == {"field": "label_pattern", "max": str(MAX_PATTERN_LENGTH)}
    with pytest.raises(InvalidArgument) as too_many:
        caller_globs(["*"] * (MAX_PATTERNS + 1), "reader_patterns")
    assert too_many.value.metadata == {"field": "reader_patterns", "max": str(MAX_PATTERNS)}
    assert caller_globs(["?" * MAX_PATTERN_LENGTH] * MAX_PATTERNS, "reader_patterns")
