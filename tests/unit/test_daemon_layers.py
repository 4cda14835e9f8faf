"""The daemon's layers import one way down (yubikit's shape), checked on the source.

transport (``hwgated.pcsc``) → protocol (``hwgated.piv``, pure) → PIV application
(``hwgated.pivapp``) → API (``hwgated.api``). The transport knows no card
application: the daemon injects the identity reader into it. The protocol
raises only its own errors. The application talks to the card only through
``hwgated.pcsc.connection``. Only ``pcsc/scard.py`` imports pyscard.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAEMON = Path(__file__).resolve().parents[2] / "daemon"
PACKAGE = DAEMON / "hwgated"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(DAEMON).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    return _imports_in(path.read_text(), package, str(path))


def _imports_in(source: str, package: str, filename: str = "<test>") -> list[tuple[int, str]]:
    """(line, absolute module) for every import in *source*, relative ones resolved
    against *package* (the package the file belongs to)."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # ``from hwgated import errors`` imports the module hwgated.errors.
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _offenders(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()
) -> list[str]:
    return [
        f"{path.relative_to(DAEMON)}:{line} imports {module}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for line, module in _imports(path)
        if _within(module, forbidden) and not _within(module, allowed)
    ]


def test_transport_knows_no_card_application() -> None:
    forbidden = ("hwgated.piv", "hwgated.pivapp", "hwgated.api", "hwgated.server")
    assert _offenders("pcsc", forbidden) == []


def test_protocol_is_pure() -> None:
    """hwgated.piv imports no other hwgated package: its errors are its own."""
    forbidden = ("hwgated", "smartcard", "grpc", "pkcs11")
    assert _offenders("piv", forbidden, allowed=("hwgated.piv",)) == []


def test_application_reaches_the_card_only_through_the_connection() -> None:
    forbidden = ("hwgated.pcsc", "hwgated.api", "hwgated.server", "smartcard", "grpc")
    assert _offenders("pivapp", forbidden, allowed=("hwgated.pcsc.connection",)) == []


def test_only_scard_imports_pyscard() -> None:
    users = {
        str(path.relative_to(DAEMON))
        for path in PACKAGE.rglob("*.py")
        for _, module in _imports(path)
        if _within(module, ("smartcard",))
    }
    assert users == {"hwgated/pcsc/scard.py"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from hwgated import errors\n", "hwgated.errors"),
        ("from . import commands\n", "hwgated.piv.commands"),
        ("from .session import PivCard\n", "hwgated.piv.session"),
        ("from ..pcsc import scard\n", "hwgated.pcsc.scard"),
        ("import hwgated.api.errors\n", "hwgated.api.errors"),
        ("def f():\n    from hwgated.pivapp import app\n", "hwgated.pivapp.app"),
    ],
)
def test_the_checker_sees_every_import_form(source: str, expected: str) -> None:
    """Absolute, relative, ``from package import module`` and function-local imports."""
    assert expected in [module for _, module in _imports_in(source, "hwgated.piv")]
