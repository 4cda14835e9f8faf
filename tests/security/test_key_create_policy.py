"""The `create` grant of a key rule (issue 14 item 8): parsing and evaluation, in-process."""

from __future__ import annotations

from typing import Any

import pytest

from hwgated.auth.identity import Caller
from hwgated.auth.policy import Policy
from hwgated.config import ConfigError, parse_config
from hwgated.errors import PolicyDenied


def config(keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "listen": [{"unix": "/tmp/never.sock", "role": "admin"}],
        "policy": {
            "roles": {"admin": {"allow": ["*"]}, "enrollment": {"allow": ["*"]}},
            "keys": keys,
        },
    }


RULES = [
    {"pattern": "act-*", "roles": ["enrollment", "admin"], "create": ["enrollment", "admin"]},
    {"pattern": "signer-*", "roles": ["enrollment", "admin"], "create": ["admin"]},
    {"pattern": "derive-value:act-*", "roles": ["admin"]},
    {"pattern": "*", "roles": ["admin"]},
]


def policy(keys: list[dict[str, Any]] = RULES) -> Policy:
    return Policy(parse_config(config(keys)).policy)


@pytest.mark.parametrize(
    ("role", "label", "allowed"),
    [
        ("enrollment", "act-0001", True),
        ("enrollment", "signer-zz", False),  # may use signer-*, may not mint them
        ("admin", "signer-zz", True),
        ("admin", "anything-else", False),  # "*" grants use only: create is never implied
        ("enrollment", "", False),
        ("nobody", "act-0001", False),
    ],
)
def test_create_is_its_own_first_match_grant(role: str, label: str, allowed: bool) -> None:
    p = policy()
    assert p.allows_create(role, label) is allowed
    if allowed:
        p.check_create(label, Caller(role, "test", "test"))
    else:
        with pytest.raises(PolicyDenied) as err:
            p.check_create(label, Caller(role, "test", "test"))
        assert err.value.metadata == {"rule": "create"}


def test_use_rules_are_unchanged_by_create() -> None:
    assert policy().allows_key("enrollment", "signer-zz")
    assert not policy().allows_key("enrollment", "other")


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"pattern": "x", "roles": ["admin"], "create": ["ghost"]}, "ghost"),
        ({"pattern": "derive-value:x", "roles": ["admin"], "create": ["admin"]}, "create"),
        ({"pattern": "x", "roles": ["admin"], "create": "admin"}, "create"),
        ({"pattern": "x", "roles": ["admin"], "create": ["admin", "enrollment"]}, "also"),
    ],
)
def test_bad_create_grants_are_config_errors(rule: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config(config([rule]))


def test_reader_rules_take_no_create() -> None:
    raw = config([])
    raw["policy"]["readers"] = [{"pattern": "*", "roles": ["admin"], "create": ["admin"]}]
    with pytest.raises(ConfigError, match="create"):
        parse_config(raw)
