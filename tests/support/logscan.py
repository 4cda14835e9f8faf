"""End-of-session secret scan: no PIN or token PIN may appear in any daemon log or audit file.

The daemon promises never to log a PIN, a secret or key material. Unit tests
check the places we know about; this scan checks the places we did not think
of, using every log the whole test session produced as evidence.

What is scanned: every file handed to :func:`register_log` (tests/support/daemon
.start_daemon should call it with its ``log`` argument, and with the config's
audit file when it knows it), plus, under pytest's base temp directory, files
that look like hwgated logs or audit files (``*.log``, ``*.jsonl``, ``audit*``)
outside test-bed directories (the virtual card's own debug log legitimately
shows the VERIFY it received).

What is looked for: the PINs the tests use (``KNOWN_PINS``), the test bed's
token user PIN (``token-user.pin`` files), the private keys the bed escrows
(each card's Key Management key, listed in ``escrow/*.json``: its PKCS#8 DER
and its private numbers, see :func:`escrowed_keys`), and any value passed to
:func:`register_secret` — as text (delimited, so ``1234567`` does not match
``123456``), as hex (a logged APDU) and as base64 (a logged protobuf as JSON).

Wiring: the top-level conftest lists ``"support.logscan"`` in
``pytest_plugins``; until then tests/security/conftest.py registers it.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hwgate_testbed import xdist_roles

# 123456: the virtual cards' PIN; the rest: the wrong PINs tests/piv sends.
KNOWN_PINS: tuple[bytes, ...] = (b"123456", b"654321", b"11112222", b"9999999")
LOG_GLOBS = ("*.log", "*.jsonl", "audit*")
TESTBED_MARKER = "token-user.pin"  # a directory holding this is a test bed root
MAX_SCAN_BYTES = 64 << 20  # per file; a runaway log is cut rather than read whole

_logs: set[Path] = set()
_secrets: set[bytes] = set()


def register_log(path: Path | str) -> None:
    """Scan *path* at the end of the session (call it wherever a daemon log is made)."""
    _logs.add(Path(path))


def register_secret(value: bytes | str) -> None:
    """Also look for *value* (at least 4 bytes; shorter ones would match by chance)."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) >= 4:
        _secrets.add(raw)


@dataclass(frozen=True)
class Finding:
    file: Path
    line: int
    form: str  # "text", "hex" or "base64"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: a secret appears ({self.form})"


def _patterns(secret: bytes) -> list[tuple[str, re.Pattern[bytes]]]:
    text = re.escape(secret)
    hexed = re.escape(secret.hex().encode())
    b64 = re.escape(base64.b64encode(secret).rstrip(b"=")[: max(4, len(secret) * 4 // 3)])
    return [
        ("text", re.compile(rb"(?<![0-9A-Za-z])" + text + rb"(?![0-9A-Za-z])")),
        ("hex", re.compile(hexed, re.IGNORECASE)),
        ("base64", re.compile(rb"(?<![0-9A-Za-z+/])" + b64)),
    ]


def scan_files(files: Iterable[Path], secrets: Iterable[bytes]) -> list[Finding]:
    """Every place one of *secrets* occurs in *files* (unreadable files are skipped)."""
    patterns = [p for s in set(secrets) for p in _patterns(s)]
    findings: list[Finding] = []
    for file in sorted(set(files)):
        try:
            with file.open("rb") as fh:
                data = fh.read(MAX_SCAN_BYTES)
        except OSError:
            continue
        for number, line in enumerate(data.splitlines(), 1):
            for form, pattern in patterns:
                if pattern.search(line):
                    findings.append(Finding(file, number, form))
    return findings


def _testbed_roots(base: Path) -> list[Path]:
    roots = [p.parent for p in base.rglob(TESTBED_MARKER)]
    env = os.environ.get("HWGATE_TESTBED_DIR")
    if env and (Path(env) / TESTBED_MARKER).exists():
        roots.append(Path(env))
    return roots


def token_pins(base: Path) -> set[bytes]:
    """The test bed token PINs found under *base* (and in $HWGATE_TESTBED_DIR)."""
    pins = set()
    for root in _testbed_roots(base):
        try:
            pin = (root / TESTBED_MARKER).read_bytes().strip()
        except OSError:
            continue
        if len(pin) >= 4:
            pins.add(pin)
    return pins


def escrowed_keys(base: Path) -> set[bytes]:
    """The bytes of every private key the test beds under *base* escrowed: the card's
    9D key as PKCS#8 DER and its secret numbers (EC scalar; RSA d, p, q), so a log
    line holding a recovered key in any of those forms is found."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    found: set[bytes] = set()
    for root in _testbed_roots(base):
        for record in (root / "escrow").glob("*.json"):
            key_file = root / "cards" / _record_card(record) / "slot-9d.key.pem"
            try:
                key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            except (OSError, ValueError):
                continue
            found.add(key.private_bytes(serialization.Encoding.DER,
                      serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
            if isinstance(key, ec.EllipticCurvePrivateKey):
                numbers = [key.private_numbers().private_value]
            elif isinstance(key, rsa.RSAPrivateKey):
                n = key.private_numbers()
                numbers = [n.d, n.p, n.q]
            else:
                numbers = []
            found.update(v.to_bytes((v.bit_length() + 7) // 8, "big") for v in numbers)
    return found


def _record_card(record: Path) -> str:
    """The card name an escrow record belongs to ("" when unreadable)."""
    import json

    try:
        return str(json.loads(record.read_text()).get("card", ""))
    except (OSError, ValueError):
        return ""


def candidate_logs(base: Path) -> set[Path]:
    """Log-like files under *base*, outside test bed roots, plus the registered ones."""
    skip = [root.resolve() for root in _testbed_roots(base)]
    found = {p for glob in LOG_GLOBS for p in base.rglob(glob) if p.is_file()}
    kept = {p for p in found if not any(p.resolve().is_relative_to(r) for r in skip)}
    return kept | {p for p in _logs if p.is_file()}


class LogScanPlugin:
    """The pytest side: scan once the session is over and fail the run on a finding.

    Under pytest-xdist each worker scans its own logs with the secrets its tests
    registered, and hands the result to the controller, which reports them all."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.findings: list[str] = []
        self.scanned = 0

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        scanned, findings = xdist_roles.from_worker(node, _RESULT_KEY) or (0, [])
        self.scanned += scanned
        self.findings.extend(findings)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not xdist_roles.is_controller(self.config):
            self._scan()
            xdist_roles.hand_to_controller(self.config, _RESULT_KEY, (self.scanned, self.findings))
        if self.findings:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _scan(self) -> None:
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None:
            return
        base = factory.getbasetemp()
        files = candidate_logs(base)
        secrets = {*KNOWN_PINS, *token_pins(base), *escrowed_keys(base), *_secrets}
        self.scanned = len(files)
        self.findings = [str(f) for f in scan_files(files, secrets)]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.findings:
            terminalreporter.section("secret scan: FAILED", red=True)
            for finding in self.findings[:50]:
                terminalreporter.line(finding)
        elif self.scanned:
            terminalreporter.write_line(f"secret scan: {self.scanned} log files clean")


_RESULT_KEY = "hwgate_secret_scan"
PLUGIN_NAME = "hwgate-logscan"


def ensure_registered(config: pytest.Config) -> None:
    """Register the scan once, whoever asks first (a conftest or ``pytest_plugins``)."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(LogScanPlugin(config), PLUGIN_NAME)


def pytest_configure(config: pytest.Config) -> None:
    ensure_registered(config)
