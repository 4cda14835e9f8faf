"""Glob patterns (``*``, ``?``, ``[...]``) matched in time linear in the text.

Why not :mod:`fnmatch`: ``fnmatch.translate`` scans to the end of the pattern for
every ``[`` that has no closing ``]``, so one pattern of a million ``[`` took
minutes of CPU on the event loop (issue 14), and ``fnmatchcase`` keeps up to
32768 compiled caller patterns in a process-wide cache. Here a pattern is
compiled in one pass (the closing ``]`` of every position is precomputed) and
matched as a bit-parallel NFA (Shift-And): one big-integer step per character
of the text, whatever the pattern holds, and no backtracking at all.

Semantics are ``fnmatch.fnmatchcase``'s for every pattern: a ``[`` with no
closing ``]`` is a literal, ``[!...]`` negates, ``]`` first in a class is a
member, ranges follow the standard library (each class body is handed to
``fnmatch.translate`` alone, which is linear for one class). Case-sensitive.

Caller-supplied patterns are bounded as well (:func:`caller_globs`): a length
and a count cap, refused with INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Sequence

from hwgated.errors import InvalidArgument

# Bounds for patterns a caller sends (ListKeys.label_pattern, WatchEvents.reader_patterns).
# Reader names are at most 127 bytes in pcsc-lite and key labels are short by
# convention; 256 characters is generous for any real pattern.
MAX_PATTERN_LENGTH = 256
MAX_PATTERNS = 32

_ANY = "?"
_ClassTest = Callable[[str], object]  # one ``[...]`` token: does it accept a character?
_Token = str | _ClassTest  # a literal character, _ANY, or a class (stars are kept apart)


class _CloseFinder:
    """The first ``]`` at or after a position, for positions asked in increasing order.

    The last answer stays valid while the position has not passed it, so every
    character is scanned at most once (``str.find`` from each ``[`` would rescan
    the rest of the pattern each time: the quadratic case of fnmatch).
    """

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._found = -1

    def at_or_after(self, start: int) -> int:
        """Index of the first ``]`` at or after *start*; ``len(pattern)`` when none."""
        if self._found < start:
            found = self._pattern.find("]", start)
            self._found = len(self._pattern) if found < 0 else found
        return self._found


def _class_test(text: str, seen: dict[str, _ClassTest]) -> _ClassTest:
    # One class alone translates in time linear in its own length; repeats compile once.
    test = seen.get(text)
    if test is None:
        test = seen[text] = re.compile(fnmatch.translate(text)).match
    return test


def _tokenize(pattern: str) -> tuple[list[_Token], list[bool]]:
    """The non-star tokens, and for each position 0..k whether a star may loop there."""
    tokens: list[_Token] = []
    loops = [False]
    close = _CloseFinder(pattern)
    classes: dict[str, _ClassTest] = {}
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            loops[-1] = True
            continue
        if c == "[":
            # The same scan as fnmatch.translate, with the ']' lookup precomputed.
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            j = close.at_or_after(j)
            if j < n:
                tokens.append(_class_test(pattern[i - 1 : j + 1], classes))
                i = j + 1
            else:
                tokens.append("[")
        else:
            tokens.append(c)
        loops.append(False)
    return tokens, loops


def _bits(positions: Iterable[int], size: int) -> int:
    """An int with the given bits set, built in O(size) (``|=`` per bit would be quadratic)."""
    raw = bytearray(size // 8 + 1)
    for i in positions:
        raw[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(raw, "little")


class Glob:
    """A compiled glob pattern; :meth:`match` is ``fnmatch.fnmatchcase(text, pattern)``."""

    __slots__ = (
        "_any",
        "_classes",
        "_final",
        "_fixed",
        "_literals",
        "_loops",
        "_prefix",
        "_size",
        "pattern",
    )

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tokens, loops = _tokenize(pattern)
        # Shift-And state: bit i set = the first i tokens match the text read so far.
        self._size = len(tokens) + 1
        self._final = 1 << len(tokens)
        self._loops = _bits((i for i, loop in enumerate(loops) if loop), self._size)
        self._fixed = None if self._loops else len(tokens)  # no star: the length is fixed
        self._any = _bits((i for i, t in enumerate(tokens) if t == _ANY), self._size)
        # Positions only; a character's mask is built when a text first holds it.
        self._literals: dict[str, list[int]] = {}
        self._classes: list[tuple[_ClassTest, int]] = []
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                self._classes.append((token, i))
            elif token != _ANY:
                self._literals.setdefault(token, []).append(i)
        # Fast path for the common policy shapes "name" and "prefix*".
        plain = all(isinstance(t, str) and t != _ANY for t in tokens)
        self._prefix: str | None = None
        if plain and (self._loops in (0, self._final)):
            self._prefix = "".join(t for t in tokens if isinstance(t, str))

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    def match(self, text: str) -> bool:
        if self._prefix is not None:
            if self._fixed is not None:
                return text == self._prefix
            return text.startswith(self._prefix)
        if self._fixed is not None and len(text) != self._fixed:
            return False
        masks: dict[str, int] = {}
        state, loops = 1, self._loops
        for c in text:
            mask = masks.get(c)
            if mask is None:
                mask = self._mask(c)
                masks[c] = mask
            state = ((state & mask) << 1) | (state & loops)
            if not state:
                return False
        return bool(state & self._final)

    def _mask(self, c: str) -> int:
        """The tokens that accept character *c*."""
        hits = [i for test, i in self._classes if test(c)]
        return self._any | _bits((*self._literals.get(c, ()), *hits), self._size)


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> Glob:
    """A compiled pattern; cached, since policy patterns are matched on every call."""
    return Glob(pattern)


def glob_match(text: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase(text, pattern)`` in time linear in ``len(text)``."""
    return compile_glob(pattern).match(text)


def any_match(text: str, patterns: Iterable[str]) -> bool:
    return any(compile_glob(p).match(text) for p in patterns)


def caller_globs(patterns: Sequence[str], field: str) -> tuple[Glob, ...]:
    """Caller-sent patterns, bounded and compiled; InvalidArgument naming *field* when too big.

    Not cached: a caller's patterns live as long as its request.
    """
    if len(patterns) > MAX_PATTERNS:
        raise InvalidArgument(
            f"at most {MAX_PATTERNS} patterns are allowed", field=field, max=MAX_PATTERNS
        )
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidArgument(
                f"a pattern is limited to {MAX_PATTERN_LENGTH} characters",
                field=field,
                max=MAX_PATTERN_LENGTH,
            )
    return tuple(Glob(p) for p in patterns)
