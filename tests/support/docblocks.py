"""The fenced code blocks of a Markdown file, and whether the suite runs them.

The convention (stated in README.md, "The two commands"): an HTML comment
on the line right before a fence decides, and is invisible on the rendered page.

    <!-- test: run -->             the suite runs this block (tests/docs/test_readme.py)
    <!-- test: skip REASON -->     never run; the reason says why (e.g. it installs)

Every ``sh``/``bash``/``python`` block needs one of the two, so a new example
cannot slip in untested by being forgotten: an unmarked one is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RUNNABLE_LANGUAGES = ("sh", "bash", "python")
MARK = re.compile(r"^<!--\s*test:\s*(run|skip)\b\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


class MarkerError(ValueError):
    """A block without a marker, a skip without a reason, or an unclosed fence."""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of the fence), its text, its fate."""

    line: int
    language: str
    text: str
    action: str  # "run", "skip" or "" (a language the suite does not run)
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.language}@{self.line}"


def blocks(markdown: str) -> list[Block]:
    """Every fenced block in *markdown*, marked as the convention says."""
    lines = markdown.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.group(1), opening.group(2)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence)), None)
        if end is None:
            raise MarkerError(f"line {i + 1}: the {fence} fence is never closed")
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = MARK.match(before)
        action, reason = (mark.group(1), mark.group(2)) if mark else ("", "")
        if language in RUNNABLE_LANGUAGES and not mark:
            raise MarkerError(
                f"line {i + 1}: {language} block without <!-- test: run --> or "
                "<!-- test: skip REASON -->"
            )
        if action == "skip" and not reason:
            raise MarkerError(f"line {i + 1}: <!-- test: skip --> needs a reason")
        text = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(i + 1, language, text, action, reason))
        i = end + 1
    return found


def runnable(markdown: str) -> list[Block]:
    return [b for b in blocks(markdown) if b.action == "run"]
