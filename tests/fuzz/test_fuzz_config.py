"""Config files: whatever an operator (or an attacker with write access to /etc) writes,
loading either succeeds or raises ConfigError — never a traceback, never exit 1.
"""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from hwgated.config import ConfigError, parse_config

pytestmark = pytest.mark.fuzz

# Keys the schema knows, so random documents reach deep validation, plus a few it does not.
KEYS = {
    "daemon": ["log_level", "grace_period", "max_message_bytes", "metrics", "log_target"],
    "listen": [
        "unix",
        "tcp",
        "mode",
        "group",
        "role",
        "tls_cert",
        "tls_key",
        "client_ca",
        "insecure",
    ],
    "pcsc": [
        "readers",
        "max_session_ttl",
        "max_apdus_per_transmit",
        "journal_size",
        "subscriber_queue",
    ],
    "token": [
        "name",
        "module",
        "token_label",
        "token_serial",
        "pin_file",
        "pin_env",
        "pin_credential",
        "workers",
        "op_timeout",
        "env",
    ],
    "audit": ["file"],
    "limits": [
        "verify_pin_per_minute",
        "max_sessions_per_identity",
        "max_streams_per_connection",
        "handshake_timeout",
        "max_connections_per_listener",
    ],
    "identity": ["role", "san_uri", "cn"],
    "rule": ["pattern", "roles"],
    "wrap": ["keys", "wrapping_keys", "roles", "operations"],
}

TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            "kiosk",
            "admin",
            "*",
            "0660",
            "0o777",
            "999",
            "127.0.0.1:7443",
            "[::1]:1",
            "10.0.0.1:80",
            "localhost:0",
            "host:²",
            ":",
            "/tmp",
            "-",
            "debug",
            "auto",
            "a\x00b",
            "../../etc/passwd",
            "~nobody/x",
        ]
    ),
    st.text(max_size=20),
)
SCALAR = st.one_of(
    TEXT,
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True),
    st.booleans(),
    st.datetimes(),
    st.lists(TEXT, max_size=3),
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)


def table(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from([*KEYS[kind], "unknown"])
    return st.dictionaries(keys, VALUE, max_size=len(KEYS[kind]))


def document() -> st.SearchStrategy[dict[str, Any]]:
    policy = st.fixed_dictionaries(
        {},
        optional={
            "roles": st.dictionaries(TEXT, st.fixed_dictionaries({}, optional={"allow": VALUE})),
            "identity": st.lists(table("identity"), max_size=3),
            "keys": st.lists(table("rule"), max_size=3),
            "readers": st.lists(table("rule"), max_size=3),
            "wrap": st.lists(table("wrap"), max_size=3),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "daemon": table("daemon"),
            "listen": st.one_of(st.lists(table("listen"), max_size=3), VALUE),
            "pcsc": table("pcsc"),
            "hsm": st.fixed_dictionaries(
                {}, optional={"token": st.lists(table("token"), max_size=2)}
            ),
            "policy": st.one_of(policy, VALUE),
            "audit": table("audit"),
            "limits": table("limits"),
            "extra": VALUE,
        },
    )


def check(raw: dict[str, Any], base: Path) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(raw, source="fuzz.toml", base=base)


@fuzz_settings(4)
@given(document())
def test_random_documents_only_raise_config_error(raw: dict[str, Any]) -> None:
    check(raw, Path("/tmp"))


@fuzz_settings(1)
@given(st.text(max_size=400))
def test_random_toml_text(text: str) -> None:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # load_config turns this into ConfigError itself
    check(raw, Path("/tmp"))


SOCK = {"unix": "/tmp/hwgate-fuzz.sock", "role": "k"}
KNOWN_ESCAPES = [
    # str.isdigit() accepts "²"; int() does not (config._split_host_port).
    {"listen": [{"tcp": "127.0.0.1:²", "insecure": True, "role": "k"}]},
    {"daemon": {"metrics": "h:²"}, "listen": [SOCK]},
    # grp.getgrnam raises ValueError, not KeyError, on an embedded NUL.
    {"listen": [{**SOCK, "group": "a\x00"}]},
]
ACCEPTED_BUT_UNUSABLE = [
    {"listen": [{"unix": "/tmp/a\x00b", "role": "k"}]},  # bind fails later, outside ConfigError
    {"daemon": {"grace_period": float("nan")}, "listen": [SOCK]},  # NaN < minimum is False
    {"daemon": {"grace_period": float("inf")}, "listen": [SOCK]},
    {"daemon": {"max_message_bytes": 2**40}, "listen": [SOCK]},  # grpc options are int32
]


@pytest.mark.parametrize("raw", KNOWN_ESCAPES)
def test_known_escapes_are_config_errors(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_config(raw, source="fuzz.toml", base=Path("/tmp"))


@pytest.mark.parametrize("raw", ACCEPTED_BUT_UNUSABLE)
def test_unusable_values_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_config(raw, source="fuzz.toml", base=Path("/tmp"))
