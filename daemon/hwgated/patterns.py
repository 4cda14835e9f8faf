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


def _next_close(pattern: str) -> list[int]:
    """For each index, the index of the first ``]`` at or after it (len when none)."""
    n = len(pattern)
    nxt = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        nxt[i] = i if pattern[i] == "]" else nxt[i + 1]
    return nxt


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
    close = _next_close(pattern)
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
            j = close[j]
            if j < n:
                tokens.append(_class_test(pattern[i - 1 : j + 1], classes))
                i = j + 1
            else:
                tokens.append("[")
        else:
            tokens.append(c)
        loops.append(False)
    return tokens, loops


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
        "pattern",
    )

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tokens, loops = _tokenize(pattern)
        # Shift-And state: bit i set = the first i tokens match the text read so far.
        self._final = 1 << len(tokens)
        self._loops = sum(1 << i for i, loop in enumerate(loops) if loop)
        self._fixed = None if self._loops else len(tokens)  # no star: the length is fixed
        self._any = 0
        self._literals: dict[str, int] = {}
        self._classes: list[tuple[_ClassTest, int]] = []
        for i, token in enumerate(tokens):
            bit = 1 << i
            if not isinstance(token, str):
                self._classes.append((token, bit))
            elif token == _ANY:
                self._any |= bit
            else:
                self._literals[token] = self._literals.get(token, 0) | bit
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
        mask = self._any | self._literals.get(c, 0)
        for test, bit in self._classes:
            if test(c):
                mask |= bit
        return mask


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
