"""The breaking-change guard (protos/buf-check, run by `make lint`) on scratch copies.

hwgate.v1 is stable: buf breaking (FILE rules) against the committed baseline
protos/hwgate-v1.binpb must fail a change that breaks v1, and keep working
when the protos import googleapis types from the installed
googleapis-common-protos (no network, nothing vendored). Scratch copies live
in tmp_path; nothing here writes into the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUARD = REPO / "protos" / "buf-check"
BASELINE = REPO / "protos" / "hwgate-v1.binpb"


def guard(verb: str, *args: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BIN": str(Path(sys.executable).parent)}
    return subprocess.run(
        [str(GUARD), verb, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the checkout's protos with its own baseline, made from the copy."""
    shutil.copytree(REPO / "protos" / "hwgate", tmp_path / "protos" / "hwgate")
    made = guard("baseline", tmp_path / "protos", tmp_path / "baseline.binpb")
    assert made.returncode == 0, made.stderr
    return tmp_path / "protos"


def edit(protos: Path, file: str, pattern: str, replacement: str) -> None:
    path = protos / "hwgate" / "v1" / file
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
    assert count == 1, f"{pattern!r} not in {file}: the test's edit needs updating"
    path.write_text(text)


def test_checkout_passes_lint_and_its_committed_baseline() -> None:
    lint = guard("lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    breaking = guard("breaking")
    assert breaking.returncode == 0, breaking.stdout + breaking.stderr


def test_unchanged_copy_passes(scratch: Path) -> None:
    result = guard("breaking", scratch, scratch.parent / "baseline.binpb")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


BREAKS = {
    "field renumbered": (
        r"uint64 after_sequence = 1;",
        "uint64 after_sequence = 15;",
        'Previously present field "1" with name "after_sequence" on message '
        '"WatchEventsRequest" was deleted.',
    ),
    "field type changed": (
        r"uint64 after_sequence = 1;",
        "string after_sequence = 1;",
        'Field "1" with name "after_sequence" on message "WatchEventsRequest" changed type '
        'from "uint64" to "string".',
    ),
    "field removed": (
        r"^\s*repeated string reader_patterns = 2;\n",
        "",
        'Previously present field "2" with name "reader_patterns" on message '
        '"WatchEventsRequest" was deleted.',
    ),
    "rpc removed": (
        r"^\s*rpc WatchEvents\(.*\n",
        "",
        'Previously present RPC "WatchEvents" on service "CardService" was deleted.',
    ),
}


@pytest.mark.parametrize("change", sorted(BREAKS))
def test_a_breaking_change_fails_with_bufs_message(scratch: Path, change: str) -> None:
    pattern, replacement, message = BREAKS[change]
    edit(scratch, "card.proto", pattern, replacement)
    result = guard("breaking", scratch, scratch.parent / "baseline.binpb")
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout
    assert "make protos-baseline" in result.stderr


def test_googleapis_imports_build_lint_and_compare(scratch: Path) -> None:
    """google/rpc/status.proto and google/type/date.proto come from site-packages."""
    (scratch / "hwgate" / "v1" / "scratch.proto").write_text(
        'syntax = "proto3";\n\npackage hwgate.v1;\n\n'
        'import "google/rpc/status.proto";\nimport "google/type/date.proto";\n\n'
        "option java_multiple_files = true;\n\n"
        "// ScratchRecord uses googleapis types.\nmessage ScratchRecord {\n"
        "  // A day.\n  google.type.Date day = 1;\n"
        "  // A status.\n  google.rpc.Status status = 2;\n}\n"
    )
    lint = guard("lint", scratch)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    added = guard("breaking", scratch, scratch.parent / "baseline.binpb")
    assert added.returncode == 0, added.stdout + added.stderr  # adding is not breaking
    # ... and a baseline with those imports guards them like anything else.
    assert guard("baseline", scratch, scratch.parent / "with-date.binpb").returncode == 0
    edit(scratch, "scratch.proto", r"google\.type\.Date day = 1;", "google.rpc.Status day = 1;")
    changed = guard("breaking", scratch, scratch.parent / "with-date.binpb")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert 'changed type from "google.type.Date" to "google.rpc.Status"' in changed.stdout


def test_lint_still_lints_the_hwgate_files(scratch: Path) -> None:
    """Linting an image limited to hwgate/ still applies buf.yaml's rules (COMMENTS here)."""
    edit(scratch, "card.proto", r"^// WatchEventsRequest .*\n", "")
    result = guard("lint", scratch)
    assert result.returncode != 0
    assert 'Message "WatchEventsRequest" should have a non-empty comment' in result.stdout
