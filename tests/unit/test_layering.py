"""Who may import whom: tests use tests/support and the test bed, never bench/.

bench/ is a measuring tool that may change with whatever it measures; a test that
imported it would silently change with it. The helpers both need (the gateway
harness, the soak workload) live in tests/support/ and bench/ imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def test_tests_never_import_bench() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}:{line} {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, name in _imported_modules(path)
        if name == "bench" or name.startswith("bench.")
    ]
    assert offenders == []


def _support_modules_bench_uses() -> set[str]:
    """X for every ``from tests.support import X`` / ``tests.support.X`` in bench/."""
    used = set()
    for path in (TESTS.parent / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "tests.support":
                used.update(alias.name for alias in node.names)
        for _, name in _imported_modules(path):
            if name.startswith("tests.support."):
                used.add(name.split(".")[2])
    return used


def test_support_modules_bench_uses_import_each_other_relatively() -> None:
    """tests/support is ``support`` under pytest and ``tests.support`` under bench/;
    only relative imports between its modules work under both names."""
    used = _support_modules_bench_uses()
    assert {"harness", "soak"} <= used
    offenders = [
        f"{name}.py:{line} {module}"
        for name in sorted(used)
        for line, module in _imported_modules(TESTS / "support" / f"{name}.py")
        if module.split(".")[0] in {"support", "tests"}
    ]
    assert offenders == []
