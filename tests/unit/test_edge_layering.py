"""The interceptors (auth/, ops/) and the edge they share never import the servicers.

hwgated.api depends on hwgated.auth (caller, policy, audit); an interceptor that
imported hwgated.api back made a cycle that only import order kept working.
What both sides need lives in hwgated.edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAEMON = Path(__file__).resolve().parents[2] / "daemon" / "hwgated"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in *path*, ``from a import b`` as a.b too."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def _offenders(package: str) -> list[str]:
    return [
        f"{path.relative_to(DAEMON)}:{line} {module}"
        for path in sorted((DAEMON / package).rglob("*.py"))
        for line, module in _imports(path)
        if module == "hwgated.api" or module.startswith("hwgated.api.")
    ]


@pytest.mark.parametrize("package", ["auth", "ops", "edge"])
def test_package_does_not_import_api(package: str) -> None:
    assert (DAEMON / package).is_dir()
    assert _offenders(package) == []


def test_the_check_sees_an_import_of_api(tmp_path: Path) -> None:
    """The AST walk itself: both spellings of an import of hwgated.api are found."""
    sample = tmp_path / "sample.py"
    sample.write_text("from hwgated import api\nimport hwgated.api.errors\n")
    assert [m for _, m in _imports(sample) if m.startswith("hwgated.api")] == [
        "hwgated.api",
        "hwgated.api.errors",
    ]
