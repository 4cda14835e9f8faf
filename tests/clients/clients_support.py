"""A hwgated for the client tests: kiosk/admin sockets, mTLS on a free port, the HSM.

The config follows the test bed's own (hwgate_testbed.daemon_config: roles,
mTLS identities, key and reader rules) with private sockets and port, so tests
never touch the shared test bed daemon or 127.0.0.1:7443.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hwgate.cli.main import main as cli_main
from hwgate_testbed.daemon_config import KEY_RULES, READER_RULES, ROLE_ALLOW
from hwgate_testbed.paths import PKI_CLIENTS, SOFTHSM_MODULE, TOKEN_LABEL
from hwgate_testbed.tlspki import spiffe_uri
from support.daemon import DaemonProc, start_daemon

q = json.dumps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    """One running daemon and how to reach it."""

    proc: DaemonProc
    directory: Path
    port: int
    pki: Path

    @property
    def admin(self) -> str:
        return f"unix://{self.directory / 'admin.sock'}"

    @property
    def kiosk(self) -> str:
        return f"unix://{self.directory / 'hwgate.sock'}"

    @property
    def tcp(self) -> str:
        return f"localhost:{self.port}"

    def tls_args(self, role: str) -> list[str]:
        return [
            "--cacert",
            str(self.pki / "ca.pem"),
            "--cert",
            str(self.pki / f"{role}.pem"),
            "--key",
            str(self.pki / f"{role}.key"),
        ]

    def tls_kwargs(self, role: str) -> dict[str, Path]:
        return {
            "cacert": self.pki / "ca.pem",
            "cert": self.pki / f"{role}.pem",
            "key": self.pki / f"{role}.key",
        }


def render_config(
    directory: Path, testbed: object, port: int, *, readers: Sequence[str] = ("*",), hsm: bool
) -> Path:
    paths = testbed.paths  # type: ignore[attr-defined]
    pki = paths.pki
    lines = [
        '[daemon]\nlog_level = "info"\ngrace_period = 1\n',
        f'[[listen]]\nunix = {q(str(directory / "hwgate.sock"))}\nrole = "kiosk"\n',
        f'[[listen]]\nunix = {q(str(directory / "admin.sock"))}\nmode = "0600"\nrole = "admin"\n',
        f"[[listen]]\ntcp = {q(f'127.0.0.1:{port}')}\ntls_cert = {q(str(pki / 'server.pem'))}\n"
        f"tls_key = {q(str(pki / 'server.key'))}\nclient_ca = {q(str(pki / 'ca.pem'))}\n",
        f"[pcsc]\nreaders = {q(list(readers))}\nmax_session_ttl = 10.0\njournal_size = 64\n",
    ]
    if hsm:
        lines += [
            "[[hsm.token]]",
            'name = "testbed"',
            f"module = {q(str(SOFTHSM_MODULE))}",
            f"token_label = {q(TOKEN_LABEL)}",
            f"pin_file = {q(str(paths.user_pin))}",
            "workers = 1",
            f"env = {{ SOFTHSM2_CONF = {q(str(paths.softhsm_conf))} }}\n",
        ]
    lines.append(f"[audit]\nfile = {q(str(directory / 'audit.jsonl'))}\n")
    for role, allow in ROLE_ALLOW.items():
        lines.append(f"[policy.roles.{role}]\nallow = {q(allow)}\n")
    for name in PKI_CLIENTS:
        lines.append(f"[[policy.identity]]\nsan_uri = {q(spiffe_uri(name))}\nrole = {q(name)}\n")
    # Derived values may be returned only from the ECDH key and keys the tests make.
    values = [("derive-value:cli-test-*", ["admin"]), ("derive-value:ecdh-p256", ["admin"])]
    for pattern, roles in [*values, *KEY_RULES]:
        lines.append(f"[[policy.keys]]\npattern = {q(pattern)}\nroles = {q(roles)}\n")
    for pattern, roles in READER_RULES:
        lines.append(f"[[policy.readers]]\npattern = {q(pattern)}\nroles = {q(roles)}\n")
    config = directory / "hwgated.toml"
    config.write_text("\n".join(lines))
    return config


def start_gateway(
    directory: Path,
    testbed: object,
    *,
    readers: Sequence[str] = ("*",),
    hsm: bool = True,
    port: int | None = None,
) -> Gateway:
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = render_config(directory, testbed, port, readers=readers, hsm=hsm)
    proc = start_daemon(config, directory / "admin.sock", directory / "hwgated.log")
    return Gateway(proc, directory, port, testbed.paths.pki)  # type: ignore[attr-defined]


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    raw: bytes

    def json(self) -> object:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def run_cli(args: Sequence[str], stdin: bytes = b"") -> CliResult:
    """Run ``hwgate ARGS`` in this process, capturing stdout (text and bytes) and stderr."""
    out_bytes, err = io.BytesIO(), io.StringIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", write_through=True)
    fake_in = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    old = sys.stdin
    sys.stdin = fake_in
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(list(args))
    finally:
        sys.stdin = old
    out.flush()
    raw = out_bytes.getvalue()
    return CliResult(code, raw.decode("utf-8", "replace"), err.getvalue(), raw)
