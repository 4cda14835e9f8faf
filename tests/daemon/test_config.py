"""Config loading: a good config loads; every kind of bad config names its problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwgated.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hwgated.toml"
    path.write_text(text)
    return path


def tls_files(tmp_path: Path) -> None:
    for name in ("server.pem", "server.key", "ca.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "server.key").chmod(0o600)  # hwgated refuses a key others can read


GOOD = """
[daemon]
log_level = "debug"
grace_period = 2

[[listen]]
unix = "{dir}/hwgate.sock"
mode = "0660"
role = "kiosk"

[[listen]]
unix = "{dir}/admin.sock"
mode = "0600"
role = "admin"

[[listen]]
tcp = "127.0.0.1:7443"
tls_cert = "server.pem"
tls_key = "server.key"
client_ca = "ca.pem"

[pcsc]
readers = ["Virtual PCD*"]
max_session_ttl = 10.5

[[hsm.token]]
name = "testbed"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "hwgate-testbed"
pin_file = "pin"
env = {{ SOFTHSM2_CONF = "softhsm2.conf" }}

[audit]
file = "audit.jsonl"

[policy.roles.kiosk]
allow = ["hwgate.v1.CardService/*"]
[policy.roles.admin]
allow = ["*"]
[policy.roles.enrollment]
allow = ["hwgate.v1.HsmService/Sign"]

[[policy.identity]]
san_uri = "spiffe://hwgate.test/enrollment"
role = "enrollment"

[[policy.keys]]
pattern = "issuing-ca"
roles = ["enrollment"]
"""


def test_good_config_loads_with_paths_resolved(tmp_path: Path) -> None:
    tls_files(tmp_path)
    (tmp_path / "pin").write_text("1234")
    (tmp_path / "pin").chmod(0o600)
    (tmp_path / "softhsm2.conf").write_text("")
    config = load_config(write(tmp_path, GOOD.format(dir=tmp_path)))
    assert config.daemon.log_level == "debug"
    assert config.daemon.grace_period == 2.0
    assert [lst.role for lst in config.listeners] == ["kiosk", "admin", None]
    assert config.listeners[1].mode == 0o600
    assert config.listeners[2].tls_cert == tmp_path / "server.pem"
    assert config.listeners[2].uses_tls
    assert config.pcsc.readers == ("Virtual PCD*",)
    assert config.pcsc.max_apdus_per_transmit == 64  # default
    token = config.tokens[0]
    assert token.pin_file == str(tmp_path / "pin")
    assert token.env["SOFTHSM2_CONF"] == str(tmp_path / "softhsm2.conf")
    assert config.audit.file == tmp_path / "audit.jsonl"
    assert config.policy.identities[0].role == "enrollment"
    assert config.policy.keys[0].roles == ("enrollment",)


def minimal(tmp_path: Path, extra: str = "") -> str:
    return f'[[listen]]\nunix = "{tmp_path}/s.sock"\nrole = "kiosk"\n' + extra


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[daemon]\nlog_levl = 'info'\n", "daemon: unknown key(s): log_levl"),
        ("[daemon]\nlog_level = 'loud'\n", "daemon.log_level: must be one of"),
        (
            "[daemon]\ngrace_period = 'soon'\n",
            "daemon.grace_period: expected an integer or a number, got a string",
        ),
        (
            "[pcsc]\nmax_apdus_per_transmit = true\n",
            "pcsc.max_apdus_per_transmit: expected an integer, got a boolean",
        ),
        ("[pcsc]\nreaders = 'all'\n", "pcsc.readers: expected an array"),
        ("[frobnicate]\n", "top level: unknown key(s): frobnicate"),
        (
            "[[listen]]\ntcp = '127.0.0.1:7443'\ntls_cert = 'nope.pem'\ntls_key = 'k'\n"
            "client_ca = 'c'\n",
            "listen[1].tls_cert: no such file",
        ),
        (
            "[[listen]]\ntcp = '0.0.0.0:7443'\ninsecure = true\nrole = 'kiosk'\n",
            "listen[1].insecure: plain TCP is allowed only on loopback",
        ),
        ("[[listen]]\ntcp = '127.0.0.1:7443'\n", "listen[1].tls_cert: required"),
        ("[[listen]]\ntcp = 'nonsense'\ninsecure = true\n", "listen[1].tcp: expected host:port"),
        (
            "[[hsm.token]]\nname = 't'\nmodule = '/m.so'\ntoken_label = 'x'\npin_file = 'nope'\n",
            "hsm.token[0].pin_file: no such file",
        ),
        (
            "[[hsm.token]]\nname = 't'\nmodule = '/m.so'\ntoken_label = 'x'\n",
            "set exactly one of 'pin_file', 'pin_env' or 'pin_credential'",
        ),
        ("[policy.roles.admin]\nallow = ['*']\n", "role 'kiosk' is not defined in [policy.roles]"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, minimal(tmp_path, extra)))
    assert message in str(err.value)
    assert str(tmp_path / "hwgated.toml") in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[[listen]\n"))


def test_listener_needs_exactly_one_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"listen\[0\]: set exactly one of 'unix' or 'tcp'"):
        load_config(write(tmp_path, "[[listen]]\nrole = 'kiosk'\n"))


def test_unwritable_socket_dir_is_refused(tmp_path: Path) -> None:
    # Root ignores directory permission bits, so use a path under a regular file instead:
    # neither the directory nor its parent can exist or be made.
    blocker = tmp_path / "file"
    blocker.write_text("")
    text = f'[[listen]]\nunix = "{blocker}/sub/s.sock"\nrole = "kiosk"\n'
    with pytest.raises(ConfigError, match=r"listen\[0\]\.unix: socket directory .* cannot be made"):
        load_config(write(tmp_path, text))


def test_read_only_socket_dir_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere; covered by test_unwritable_socket_dir_is_refused")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    text = f'[[listen]]\nunix = "{ro}/s.sock"\nrole = "kiosk"\n'
    with pytest.raises(ConfigError, match="is not writable"):
        load_config(write(tmp_path, text))
