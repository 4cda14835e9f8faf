"""The CLI tells why it cannot connect, in one line, and fails at once when waiting
cannot help: a missing Unix socket file, TLS against a plaintext port or the reverse.

Before: every one of these waited the whole --connect-timeout and said only
"cannot connect to ... within Ns".
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from clients_support import Gateway, free_port, run_cli
from grpc_health.v1 import health, health_pb2_grpc

from hwgate.cli import connectivity

# Long enough that "fast" below can only mean "did not wait for it".
PATIENT = ["--connect-timeout", "60"]
FAST = 20.0  # generous bound: the probe is one loopback connection


def _timed(argv: list[str]) -> tuple[float, int, str]:
    start = time.monotonic()
    result = run_cli(argv)
    return time.monotonic() - start, result.code, result.err


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_unix_socket_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "hwgate.sock"
    for addr in (f"unix://{path}", str(path), f"unix:{path}"):
        took, code, err = _timed(["--addr", addr, *PATIENT, "list"])
        assert code == 1
        assert took < FAST
        assert f"no socket at {path}" in _one_line(err)
        assert err.startswith("hwgate: cannot connect to unix:")


def test_missing_default_socket_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWGATE_ADDR", f"unix://{tmp_path}/gone.sock")
    took, code, err = _timed([*PATIENT, "readers"])
    assert code == 1 and took < FAST and "no socket at" in err


def test_a_file_that_is_no_socket(tmp_path: Path) -> None:
    path = tmp_path / "hwgate.sock"
    path.write_text("")
    took, code, err = _timed(["--addr", f"unix://{path}", *PATIENT, "list"])
    assert code == 1 and took < FAST
    assert f"{path} is not a socket" in _one_line(err)


def test_stale_socket_file_gets_a_hint(tmp_path: Path) -> None:
    """A socket file nobody accepts on (a daemon killed with SIGKILL) is named as such."""
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # bound, never listening: connect() is refused
        result = run_cli(["--addr", f"unix://{path}", "--connect-timeout", "1", "list"])
    assert result.code == 1
    assert "nothing accepts on" in _one_line(result.err)


@pytest.mark.testbed
def test_plaintext_against_the_tls_port_says_so(gateway: Gateway) -> None:
    took, code, err = _timed(["--addr", gateway.tcp, "--plaintext", *PATIENT, "list"])
    assert code == 1
    assert took < FAST
    assert "speaks TLS: drop --plaintext" in _one_line(err)


@pytest.fixture
def plaintext_server() -> Iterator[str]:
    """A plain grpcio server (health only) on a loopback port without TLS."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.testbed
def test_tls_against_a_plaintext_port_says_so(plaintext_server: str, gateway: Gateway) -> None:
    argv = ["--addr", plaintext_server, *gateway.tls_args("admin"), *PATIENT, "health"]
    took, code, err = _timed(argv)
    assert code == 1
    assert took < FAST
    assert "speaks plaintext, not TLS: add --plaintext" in _one_line(err)
    # and the hint is right: with --plaintext it works
    ok = run_cli(["--addr", plaintext_server, "--plaintext", "health", ""])
    assert ok.code == 0, ok.err


def test_closed_port_is_named_at_the_timeout() -> None:
    port = free_port()
    result = run_cli(["--addr", f"127.0.0.1:{port}", "--plaintext", "--connect-timeout", "1",
                      "list"])  # fmt: skip
    assert result.code == 1
    assert f"within 1.0s: connection refused: nothing listens on 127.0.0.1:{port}" in result.err


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("dns:///localhost:7443", ("localhost", 7443)),
        ("ipv4:127.0.0.1:7443,127.0.0.2:7443", ("127.0.0.1", 7443)),
        ("ipv6:[::1]:7443", ("::1", 7443)),
        ("dns://8.8.8.8/example.org:443", ("example.org", 443)),
        ("dns:///nohost", None),
    ],
)
def test_first_address(uri: str, address: tuple[str, int] | None) -> None:
    assert connectivity.first_address(uri) == address


def test_unix_path_forms() -> None:
    assert connectivity.unix_path("unix:///run/x.sock") == "/run/x.sock"
    assert connectivity.unix_path("unix:/run/x.sock") == "/run/x.sock"
    assert connectivity.unix_path("unix:rel.sock") == "rel.sock"
    assert connectivity.unix_path("unix-abstract:x") is None
    assert connectivity.unix_path("dns:///h:1") is None


def test_console_script_missing_socket_exit_code(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: one line on stderr, exit 1."""
    code = "import sys; from hwgate.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "--addr", str(tmp_path / "x.sock"), "readers"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert _one_line(done.stderr).startswith("hwgate: cannot connect to unix://")
