"""README.md runs as written: every block marked ``<!-- test: run -->`` is executed
against the test bed (see support.docblocks for the convention).

The blocks run in a scratch directory laid out like a clone after ``make run``:
``.testbed`` is the suite's test bed, ``.venv`` this interpreter's environment,
and hwgated runs on the bed's own config (``hwgate-testbed run`` does the same).
``.venv/bin`` is taken off ``PATH`` so a block that forgets to say how the CLI
gets there fails, as it would for a new user; ``HOME`` is the scratch directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwgate_testbed.timing import scaled
from support.daemon import DaemonProc, start_daemon
from support.docblocks import Block, MarkerError, blocks, runnable

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = runnable(README.read_text())
BLOCK_TIMEOUT = 120.0  # seconds (scaled): a block that hangs (an endless watch) fails


@pytest.fixture(scope="module")
def clone(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory that looks like the repository root while ``make run`` runs."""
    paths = testbed.paths  # type: ignore[attr-defined]
    root = tmp_path_factory.mktemp("readme")
    (root / ".testbed").symlink_to(paths.root)
    (root / ".venv").symlink_to(Path(sys.prefix))
    daemon: DaemonProc = start_daemon(paths.daemon_config, paths.admin_socket,
                                      root / "hwgated.log")  # fmt: skip
    yield root
    daemon.stop(signal.SIGTERM)


def _environment(root: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.prefix) / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWGATE_")}
    env.pop("VIRTUAL_ENV", None)
    return {**env, "PATH": os.pathsep.join(path), "HOME": str(root)}


def run_block(block: Block, root: Path) -> subprocess.CompletedProcess[str]:
    if block.language == "python":
        argv = [str(root / ".venv" / "bin" / "python"), "-"]
    else:  # sh, bash: stop at the first failing command, as a reader would notice it
        argv = ["bash", "-e", "-o", "pipefail", "-s"]
    return subprocess.run(
        argv, input=block.text, cwd=root, env=_environment(root), capture_output=True,
        text=True, timeout=scaled(BLOCK_TIMEOUT), check=False, start_new_session=True,
    )  # fmt: skip


@pytest.mark.testbed
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_readme_block_runs(block: Block, clone: Path, cards: object) -> None:
    cards.insert(0)  # type: ignore[attr-defined]  # the README's 'Virtual PCD 00 00'
    done = run_block(block, clone)
    assert done.returncode == 0, (
        f"README.md line {block.line} ({block.language}) exited {done.returncode}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


def test_readme_has_runnable_shell_and_python() -> None:
    assert {b.language for b in BLOCKS} >= {"sh", "python"}
    skipped = [b for b in blocks(README.read_text()) if b.action == "skip"]
    assert skipped and all(b.reason for b in skipped)


def test_readme_keeps_the_two_commands() -> None:
    first = blocks(README.read_text())[0]
    assert first.text.splitlines()[0].startswith("make run ")
    assert first.text.splitlines()[1].startswith("make test ")


def test_python_example_ends_and_defines_what_it_uses() -> None:
    """The issue's findings: the old example watched forever and used `challenge`
    and `builder` without defining them, on a socket the test bed does not have."""
    (python,) = [b for b in BLOCKS if b.language == "python"]
    assert "/run/hwgate" not in python.text
    assert "challenge =" in python.text and "builder =" in python.text
    assert "break" in python.text


# --- the convention itself ---


def test_marked_blocks_are_found() -> None:
    text = (
        "<!-- test: run -->\n```sh\necho hi\n```\n\n"
        "<!-- test: skip needs root -->\n```python\nprint()\n```\n"
        "```toml\n[a]\n```\n"
    )
    found = blocks(text)
    assert [(b.language, b.action, b.reason) for b in found] == [
        ("sh", "run", ""), ("python", "skip", "needs root"), ("toml", "", ""),
    ]  # fmt: skip
    assert found[0].text == "echo hi\n" and found[0].line == 2
    assert [b.name for b in runnable(text)] == ["sh@2"]


@pytest.mark.parametrize(
    "text",
    [
        "```sh\nls\n```\n",  # no marker
        "<!-- test: skip -->\n```python\nx\n```\n",  # skip without a reason
        "<!-- test: run -->\n```sh\nls\n",  # never closed
        "<!-- test: run -->\n\ntext\n```bash\nls\n```\n",  # marker not right before it
    ],
)
def test_bad_markers_are_errors(text: str) -> None:
    with pytest.raises(MarkerError):
        blocks(text)


_body = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).filter(
        lambda line: not line.lstrip().startswith(("```", "~~~")) and not line.startswith("<!--")
    ),
    max_size=5,
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["sh", "bash", "python", "toml", "text"]),
            st.sampled_from(["run", "skip"]),
            _body,
        ),
        max_size=6,
    )
)
def test_render_then_parse_round_trips(spec: list[tuple[str, str, list[str]]]) -> None:
    parts = []
    for language, action, body in spec:
        mark = "<!-- test: run -->" if action == "run" else "<!-- test: skip a reason -->"
        parts.append("\n".join(["some prose", "", mark, f"```{language}", *body, "```", ""]))
    found = blocks("\n".join(parts))
    assert [(b.language, b.action) for b in found] == [(lang, act) for lang, act, _ in spec]
    assert [b.text for b in found] == ["\n".join(body) + "\n" for _, _, body in spec]
