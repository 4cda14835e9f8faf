"""The CLI's option contract without a daemon: connection options keep grpcurl's names and
no command reuses them; secrets come from a prompt, --pin-stdin or --pin-file, and every
way of not getting one is one clean line and exit 1 (never a traceback, never argv)."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwgate.cli import main as cli
from hwgate.cli.secret_input import SecretInputError, read_secret

CONNECTION = {"--addr", "--plaintext", "--cacert", "--cert", "--key", "--servername",
              "-H", "--header", "--connect-timeout"}  # fmt: skip
HSM_KEY_VERBS = [["sign"], ["key", "pub"], ["derive"], ["keygen"]]


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command parser, with its command path."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def _connection_actions() -> list[argparse.Action]:
    parser = cli.build_parser()
    group = next(g for g in parser._action_groups if g.title == "connection")
    return list(group._group_actions)


def test_connection_options_keep_grpcurls_names() -> None:
    names = {s for a in _connection_actions() for s in a.option_strings}
    assert names == CONNECTION
    assert set(cli.CONNECTION_OPTIONS) == CONNECTION


def test_no_command_reuses_a_connection_option_or_its_dest() -> None:
    dests = {a.dest for a in _connection_actions()}
    commands = list(_commands(cli.build_parser()))
    assert len(commands) >= 14  # every verb is walked, nested ones (card info, key pub) too
    for path, parser in commands:
        for action in parser._actions:
            clash = CONNECTION & set(action.option_strings)
            assert not clash, f"hwgate {' '.join(path)} reuses {clash}"
            assert action.dest not in dests, f"hwgate {' '.join(path)} overwrites {action.dest}"


@pytest.mark.parametrize("verb", HSM_KEY_VERBS, ids=" ".join)
def test_hsm_key_is_positional_and_tls_key_survives(verb: list[str]) -> None:
    """The bug: ``--key enrollment.key ... sign --key issuing-ca`` lost the TLS key."""
    extra = {"sign": ["--alg", "rsa-pkcs1-sha256", "--in", "tbs.der"],
             "derive": ["--mechanism", "ecdh"], "keygen": ["--alg", "ec-p256"]}  # fmt: skip
    argv = ["--addr", "127.0.0.1:7443", "--cacert", "ca.pem", "--cert", "enrollment.pem",
            "--key", "enrollment.key", *verb, "issuing-ca", *extra.get(verb[0], [])]  # fmt: skip
    args = cli.build_parser().parse_args(argv)
    assert args.key == "enrollment.key" and args.cert == "enrollment.pem"
    assert args.hsm_key == "issuing-ca"


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(argv) == 1
    return capsys.readouterr().err


def test_old_key_option_form_is_a_usage_error_with_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _usage_error(["sign", "--key", "signer-p256", "--alg", "ecdsa-sha256", "--in", "f"],
                       capsys)  # fmt: skip
    assert "unrecognized arguments: --key" in err
    assert "hint: the HSM key is the positional KEY" in err
    err = _usage_error(["keys", "--addr", "unix:///x"], capsys)
    assert "hint: connection options go before the command" in err


def test_usage_hint_only_for_unrecognized_arguments() -> None:
    assert cli.usage_hint("the following arguments are required: KEY") == ""
    assert cli.usage_hint("unrecognized arguments: --frob") == ""
    assert cli.usage_hint("unrecognized arguments: --cacert=x") != ""


# --- secrets -------------------------------------------------------------------------


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes | None) -> None:
    stream = None if data is None else io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr(sys, "stdin", stream)


def test_pin_stdin_reads_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, b"123456\r\nsecond line\n")
    pin = read_secret("PIN", stdin=True)
    assert isinstance(pin, bytearray) and pin == b"123456"
    _stdin(monkeypatch, b"12345678")  # no newline at the end of input
    assert read_secret("PIN", stdin=True) == b"12345678"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "--pin-stdin: no PIN on stdin (end of input)"),
        (b"\n", "empty PIN"),
        (None, "--pin-stdin: stdin is closed"),
    ],
)
def test_pin_stdin_failures(
    monkeypatch: pytest.MonkeyPatch, data: bytes | None, message: str
) -> None:
    _stdin(monkeypatch, data)
    with pytest.raises(SecretInputError) as err:
        read_secret("PIN", stdin=True)
    assert str(err.value) == message


def test_pin_file_first_line_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "pin"
    f.write_bytes(b"654321\n")
    assert read_secret("PIN", file=str(f)) == b"654321"
    f.write_bytes(b"\n")
    with pytest.raises(SecretInputError, match="empty PIN"):
        read_secret("PIN", file=str(f))
    with pytest.raises(SecretInputError, match=r"cannot read the PIN file .*absent"):
        read_secret("PIN", file=str(tmp_path / "absent"))


def _hwgate(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a new session: no controlling terminal."""
    code = "import sys; from hwgate.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60,
        start_new_session=True, check=False, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


VERIFY = ["--addr", "unix:///nonexistent/hwgate.sock", "--connect-timeout", "0.5",
          "card", "verify-pin", "--reader", "Virtual PCD 00 00"]  # fmt: skip


def _one_clean_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("stdin", "shell_close"),
    [(subprocess.DEVNULL, False), (None, True)],
    ids=["stdin-at-eof", "stdin-closed"],
)
def test_verify_pin_without_terminal_or_input_is_one_line(stdin: object, shell_close: bool) -> None:
    """Before: EOFError traceback (no prompt possible) or GetPassWarning noise."""
    if shell_close:  # ``<&-``: Python starts with sys.stdin = None
        code = "import sys; from hwgate.cli.main import main; sys.exit(main(sys.argv[1:]))"
        done = subprocess.run(
            ["sh", "-c", 'exec "$0" -c "$@" <&-', sys.executable, code, *VERIFY, "--pin-stdin"],
            capture_output=True, text=True, timeout=60, start_new_session=True, check=False,
        )  # fmt: skip
        assert _one_clean_line(done) == "hwgate: --pin-stdin: stdin is closed\n"
        return
    prompt = _one_clean_line(_hwgate(VERIFY, stdin=stdin))
    assert "no terminal to ask for the PIN; use --pin-stdin" in prompt
    eof = _one_clean_line(_hwgate([*VERIFY, "--pin-stdin"], stdin=stdin))
    assert eof == "hwgate: --pin-stdin: no PIN on stdin (end of input)\n"


def test_piped_pin_without_pin_stdin_is_refused_not_read() -> None:
    """A PIN piped in without --pin-stdin is not read behind a warning: the error says how."""
    done = _hwgate(VERIFY, input="123456\n")
    err = _one_clean_line(done)
    assert "use --pin-stdin" in err and "123456" not in err
    # With --pin-stdin the PIN is read, and the command goes on to connect.
    piped = _hwgate([*VERIFY, "--pin-stdin"], input="123456\n")
    assert piped.returncode == 1 and "cannot connect" in piped.stderr


def test_pin_is_never_an_argument() -> None:
    parser = cli.build_parser()
    _, verify = next(c for c in _commands(parser) if c[0] == ("card", "verify-pin"))
    assert not [a for a in verify._actions if a.dest in ("pin", "puk")]
    assert cli.main([*VERIFY, "123456"]) == 1
