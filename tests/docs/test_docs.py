"""docs/*.md hold what they show: every TOML config passes ``hwgated --check-config``,
every shell block is marked (``<!-- test: run -->`` or ``<!-- test: skip REASON -->``,
the README's convention, support.docblocks), and the marked ones run here.

docs/install.md is the exception: ``make test-systemd`` runs its ``bash`` blocks,
in order, in a booted Debian container (tests/systemd), and its ``sh`` blocks are
the ones that step leaves out (network, upgrade, uninstall); it is held to that
convention, not this one.

Paths a production config names (``/etc/hwgate``, ``/run/hwgate``,
``/var/lib/hwgate``) are moved under a scratch directory, and the files the
loader insists on (TLS certificate, key and CA, a ``pin_file``) are made there
as placeholders, and the groups ``hwgate.sysusers.conf`` makes become ``root``
where the test host lacks them, so what is checked is the config itself: its
keys, types, roles, identities and rules.
"""

from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hwgate.cli.main import main as cli_main
from hwgate_testbed.timing import scaled
from hwgated.main import main as hwgated_main
from support.daemon import start_daemon
from support.docblocks import Block, MarkerError, blocks

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
OWN_CONVENTION = {"install.md"}  # run by make test-systemd (see the module docstring)
DOCS = sorted(p for p in DOCS_DIR.glob("*.md") if p.name not in OWN_CONVENTION)
PRODUCTION_PATHS = ("/etc/hwgate/", "/run/hwgate/", "/var/lib/hwgate/")
SYSUSERS_GROUPS = ("hwgate-clients", "hwgate")


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _all(kind: str) -> list[tuple[Path, Block]]:
    found = []
    for doc in DOCS:
        try:
            found_blocks = blocks(doc.read_text())
        except MarkerError:
            continue  # test_every_shell_block_is_marked names it
        for block in found_blocks:
            if kind == "toml" and block.language == "toml" and block.action != "skip":
                found.append((doc, block))
            if kind == "run" and block.action == "run":
                found.append((doc, block))
    return found


def _id(item: tuple[Path, Block]) -> str:
    return f"{item[0].name}:{item[1].name}"


CONFIGS = _all("toml")
RUNNABLE = _all("run")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_shell_block_is_marked(doc: Path) -> None:
    blocks(doc.read_text())  # MarkerError: unmarked block, skip without a reason, open fence


def test_the_guides_are_covered() -> None:
    names = {doc.name for doc, _ in CONFIGS}
    assert {"production.md", "hardware.md", "config-schema.md"} <= names
    hardware = [b for doc, b in CONFIGS if doc.name == "hardware.md"]
    assert len(hardware) == 3, "one complete config per kind of hardware"
    assert any(doc.name == "production.md" for doc, _ in RUNNABLE)


def _placeholders(raw: dict[str, object], base: Path) -> None:
    """The files the loader checks for: TLS material, PIN files."""
    made: list[tuple[Path, int]] = []
    for listener in raw.get("listen", []):  # type: ignore[attr-defined]
        if "unix" in listener:  # RuntimeDirectory= makes it under systemd
            (base / listener["unix"]).parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        for key, mode in (("tls_cert", 0o644), ("tls_key", 0o600), ("client_ca", 0o644)):
            if key in listener:
                made.append((base / listener[key], mode))
    for token in raw.get("hsm", {}).get("token", []):  # type: ignore[attr-defined]
        if "pin_file" in token:
            made.append((base / token["pin_file"], 0o600))
    for path, mode in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("placeholder\n")
        path.chmod(mode)


def check_config(text: str, scratch: Path) -> tuple[int, str]:
    """``hwgated --check-config`` on *text* with production paths moved to *scratch*."""
    for prefix in PRODUCTION_PATHS:
        text = text.replace(prefix, f"{scratch}{prefix}")
    for group in SYSUSERS_GROUPS:  # made by hwgate.sysusers.conf on a real host
        if not _group_exists(group):
            text = text.replace(f'group = "{group}"', 'group = "root"')
    config = scratch / "etc" / "hwgate" / "hwgated.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    _placeholders(tomllib.loads(text), config.parent)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = hwgated_main(["--config", str(config), "--check-config"])
    return code, err.getvalue()


@pytest.mark.parametrize("item", CONFIGS, ids=_id)
def test_config_passes_check_config(item: tuple[Path, Block], tmp_path: Path) -> None:
    doc, block = item
    code, err = check_config(block.text, tmp_path)
    assert code == 0, f"{doc.name} line {block.line}: {err}"


def test_check_config_would_catch_a_broken_doc_config(tmp_path: Path) -> None:
    """The check is not vacuous: a typo in a documented config fails it."""
    (_, block) = next(item for item in CONFIGS if item[0].name == "hardware.md")
    code, err = check_config(block.text.replace("max_session_ttl", "max_sesion_ttl"), tmp_path)
    assert code == 2 and "max_sesion_ttl" in err


def _run(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-"] if block.language == "python" else ["bash", "-e", "-o", "pipefail"]
    return subprocess.run(
        argv, input=block.text, cwd=cwd, capture_output=True, text=True, check=False,
        timeout=scaled(120), env={**os.environ, "HOME": str(cwd)}, start_new_session=True,
    )  # fmt: skip


@pytest.mark.parametrize("item", RUNNABLE, ids=_id)
def test_runnable_block_runs(item: tuple[Path, Block], tmp_path: Path) -> None:
    doc, block = item
    done = _run(block, tmp_path)
    assert done.returncode == 0, (
        f"{doc.name} line {block.line} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )


# --- the admin certificate recipe, end to end ---

GATEWAY = "hwgate.example.org"  # the recipe's GATEWAY


def _recipe() -> Block:
    production = (DOCS_DIR / "production.md").read_text()
    (block,) = [b for b in blocks(production) if b.action == "run" and "clients-ca" in b.text]
    return block


def _cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(args)
    return code, err.getvalue()


@pytest.mark.testbed
def test_admin_certificate_recipe_gets_the_admin_role(testbed: object, tmp_path: Path) -> None:
    """production.md's openssl recipe, its listener and its identity rules: the admin's
    certificate gets the admin role over mTLS, the enrollment server's does not."""
    pki = tmp_path / "tls"
    pki.mkdir()
    done = _run(_recipe(), pki)
    assert done.returncode == 0, done.stderr
    doc_config = next(b for d, b in CONFIGS if d.name == "production.md").text
    raw = tomllib.loads(doc_config)
    (tcp,) = [listener for listener in raw["listen"] if "tcp" in listener]
    assert tcp["tls_cert"].endswith("/server.pem") and tcp["client_ca"].endswith("/clients-ca.pem")
    identities = raw["policy"]["identity"]
    assert {"cn": "hwgate-admin", "role": "admin"} in identities
    port = _free_port()
    q = json.dumps
    rules = "".join(
        "[[policy.identity]]\n" + "".join(f"{k} = {q(v)}\n" for k, v in rule.items())
        for rule in identities
    )
    config = tmp_path / "hwgated.toml"
    config.write_text(
        f'[[listen]]\nunix = {q(str(tmp_path / "admin.sock"))}\nmode = "0600"\nrole = "admin"\n'
        f'[[listen]]\ntcp = "127.0.0.1:{port}"\ntls_cert = {q(str(pki / "server.pem"))}\n'
        f"tls_key = {q(str(pki / 'server.key'))}\nclient_ca = {q(str(pki / 'clients-ca.pem'))}\n"
        '[policy.roles.admin]\nallow = ["*"]\n'
        '[policy.roles.enrollment]\nallow = ["hwgate.v1.HsmService/Sign"]\n'
        f"{rules}"
    )
    daemon = start_daemon(config, tmp_path / "admin.sock", tmp_path / "hwgated.log")
    try:
        base = ["--addr", f"127.0.0.1:{port}", "--servername", GATEWAY,
                "--cacert", str(pki / "clients-ca.pem")]  # fmt: skip
        admin = [*base, "--cert", str(pki / "admin.pem"), "--key", str(pki / "admin.key")]
        code, err = _cli([*admin, "readers"])
        assert code == 0, err
        enrollment = [*base, "--cert", str(pki / "enrollment.pem"),
                      "--key", str(pki / "enrollment.key")]  # fmt: skip
        code, err = _cli([*enrollment, "readers"])
        assert code == 64 + 7 and "POLICY_DENIED" in err, err  # PERMISSION_DENIED
    finally:
        daemon.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
