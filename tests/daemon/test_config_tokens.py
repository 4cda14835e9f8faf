"""``[[hsm.token]]``: one validator (hsm.config.token_problem) for the loader and HsmPool,
and ``hwgated`` exits 2 with one line naming the file and the dotted key, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwgated.config import ConfigError, parse_config
from hwgated.hsm import InvalidArgument, TokenConfig
from hwgated.hsm.config import token_problem

LISTEN = '[[listen]]\nunix = "{dir}/s.sock"\nrole = "kiosk"\n[policy.roles.kiosk]\nallow = []\n'
TOKEN = '[[hsm.token]]\nname = "t"\nmodule = "/m.so"\n'
WORKERS = "hsm.token[0].workers: must be 1..64"
BIG = "1" + "0" * 400  # a TOML integer float() cannot hold


def hwgated(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "hwgated.toml"
    config.write_text(LISTEN.format(dir=tmp_path) + text)
    (tmp_path / "pin").write_text("1234\n")
    return subprocess.run(
        [sys.executable, "-m", "hwgated", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("table", "message"),
    [
        # The report: passed config.py (``if s``), then HsmPool raised: traceback, exit 1.
        ('token_label = "x"\npin_file = "pin"\npin_env = ""\n',
         "hsm.token[0].pin_env: must not be empty"),
        ('token_label = "x"\npin_file = ""\n', "hsm.token[0].pin_file: must not be empty"),
        ('token_label = " "\npin_file = "pin"\n', "hsm.token[0].token_label: must not be empty"),
        ('token_label = "x"\ntoken_serial = "1"\npin_file = "pin"\n',
         "hsm.token[0]: set exactly one of 'token_label' or 'token_serial'"),
        ('token_label = "x"\npin_env = "A"\npin_credential = "c"\n',
         "hsm.token[0]: set exactly one of 'pin_file', 'pin_env' or 'pin_credential'"),
        ('token_label = "x"\npin_file = "pin"\nworkers = 0\n', f"{WORKERS}"),
        ('token_label = "x"\npin_file = "pin"\nworkers = 65\n', f"{WORKERS}"),
        ('token_label = "x"\npin_file = "pin"\nop_timeout = 0\n',
         "hsm.token[0].op_timeout: must be a finite number >= 0.1"),
        (f'token_label = "x"\npin_file = "pin"\nop_timeout = {BIG}\n',
         "hsm.token[0].op_timeout: number too large"),
        ('token_label = "x"\npin_env = "A\\u0000B"\n',
         "hsm.token[0].pin_env: may not contain a NUL byte"),
        ('token_label = "x"\npin_credential = "../pin"\n',
         "hsm.token[0].pin_credential: a credential name, not a path"),
        ('token_label = "x"\npin_file = "pin"\nenv = { "A=B" = "1" }\n',
         "hsm.token[0].env: not a variable name: 'A=B'"),
        ('token_label = "x"\npin_file = "~no-such-user-hwgate/pin"\n',
         "hsm.token[0].pin_file: cannot expand '~no-such-user-hwgate/pin'"),
        ('token_label = "x"\npin_file = "pin"\n[[hsm.token]]\nmodule = "/m.so"\n',
         "hsm.token[1].name: required"),
    ],
)  # fmt: skip
def test_bad_token_table_exits_2_naming_file_and_key(
    tmp_path: Path, table: str, message: str
) -> None:
    done = hwgated(tmp_path, TOKEN + table)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr == f"hwgated: {tmp_path / 'hwgated.toml'}: {message}\n"


def test_unforeseen_config_error_exits_2_without_traceback(tmp_path: Path) -> None:
    """main catches whatever the loader raises: an integer too large for float()."""
    done = hwgated(tmp_path, f"[daemon]\ngrace_period = {BIG}\n")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"hwgated: {tmp_path / 'hwgated.toml'}: cannot load the config:")


# --- the loader and HsmPool agree on every token table ------------------------------

TEXT = st.sampled_from([None, "", " ", "x", "a\x00b", "dir/name", "pin"])
ENV = st.dictionaries(st.sampled_from(["A", "", "A=B", "a\x00"]), st.sampled_from(["", "v"]))


@st.composite
def token_tables(draw: st.DrawFn) -> dict[str, object]:
    table: dict[str, object] = {"name": draw(st.sampled_from(["t", "", " "])), "module": "/m.so"}
    for key in ("token_label", "token_serial", "pin_env", "pin_credential"):
        if (value := draw(TEXT)) is not None:
            table[key] = value
    if (pin_file := draw(st.sampled_from([None, "", "pin"]))) is not None:
        table["pin_file"] = pin_file  # "pin" exists next to the config
    if draw(st.booleans()):
        table["workers"] = draw(st.integers(-2, 70))
    if draw(st.booleans()):
        table["op_timeout"] = draw(st.sampled_from([0, 0.05, 0.1, 3, float("inf"), float("nan")]))
    if draw(st.booleans()):
        table["env"] = draw(ENV)
    return table


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=token_tables())
def test_loader_and_pool_refuse_the_same_tables(tmp_path: Path, table: dict[str, object]) -> None:
    (tmp_path / "pin").write_text("1234")
    raw = {"listen": [{"unix": str(tmp_path / "s.sock"), "role": "k"}],
           "policy": {"roles": {"k": {"allow": []}}}, "hsm": {"token": [table]}}  # fmt: skip
    direct = TokenConfig(**{k: v for k, v in table.items()})  # type: ignore[arg-type]
    problem = token_problem(direct)
    try:
        loaded = parse_config(raw, source="t.toml", base=tmp_path).tokens[0]
    except ConfigError as exc:
        assert problem is not None, exc
        key, message = problem
        assert str(exc) == f"t.toml: hsm.token[0]{'.' + key if key else ''}: {message}"
        with pytest.raises(InvalidArgument):
            direct.validate()
        return
    assert problem is None
    loaded.validate()  # what HsmPool does first: a loaded table never fails it
