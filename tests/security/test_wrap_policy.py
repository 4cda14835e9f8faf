"""[[policy.wrap]]: which roles may wrap which keys under which wrapping keys (pure logic).

The order of the answers is part of the contract: a key no rule marks for
escrow is KEY_NOT_ESCROWABLE for everyone, then the role (rule=wrap), then the
wrapping key (rule=wrapping_key). The config parser refuses rules that would
mean something else than they say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwgated import errors
from hwgated.auth.wrap_policy import REWRAP, UNWRAP, WRAP, check_wrap
from hwgated.config import ConfigError, WrapRule, load_config

RULES = (
    WrapRule(keys=("km-*",), wrapping_keys=("escrow-kek",), roles=("admin",),
             operations=("wrap", "unwrap")),
    WrapRule(keys=("km-*", "sess-*"), wrapping_keys=("transport-*",), roles=("issuer",),
             operations=("wrap",)),
    WrapRule(keys=(), wrapping_keys=("escrow-kek",), roles=("enrollment",),
             operations=("rewrap",)),
)  # fmt: skip


@pytest.mark.parametrize(
    ("operation", "role", "key", "wrapping"),
    [
        (WRAP, "admin", "km-alice", "escrow-kek"),
        (UNWRAP, "admin", "km-restored", "escrow-kek"),
        (WRAP, "issuer", "sess-1", "transport-7"),
        (WRAP, "issuer", "km-alice", "transport-7"),
        (REWRAP, "enrollment", None, "escrow-kek"),
    ],
)
def test_granted(operation: str, role: str, key: str | None, wrapping: str) -> None:
    check_wrap(RULES, operation, role, key, wrapping)  # no exception


@pytest.mark.parametrize(
    ("operation", "role", "key", "wrapping", "reason", "rule"),
    [
        # not marked for escrow: no rule's keys match, whoever asks, whatever the KEK
        (WRAP, "admin", "signer-p256", "escrow-kek", "KEY_NOT_ESCROWABLE", None),
        (WRAP, "nobody", "issuing-ca", "escrow-kek", "KEY_NOT_ESCROWABLE", None),
        # a rule marks the key, but not for this role
        (WRAP, "enrollment", "km-alice", "escrow-kek", "POLICY_DENIED", "wrap"),
        (UNWRAP, "issuer", "km-x", "escrow-kek", "POLICY_DENIED", "wrap"),
        # role and key fine, wrapping key not the rule's
        (WRAP, "admin", "km-alice", "transport-7", "POLICY_DENIED", "wrapping_key"),
        (WRAP, "issuer", "km-alice", "escrow-kek", "POLICY_DENIED", "wrapping_key"),
        # unwrap into a label no rule names is a denial, not "not escrowable"
        (UNWRAP, "admin", "signer-new", "escrow-kek", "POLICY_DENIED", "wrap"),
        # rewrap: by role and wrapping key only
        (REWRAP, "admin", None, "escrow-kek", "POLICY_DENIED", "wrap"),
        (REWRAP, "enrollment", None, "transport-1", "POLICY_DENIED", "wrapping_key"),
    ],
)
def test_refused(
    operation: str, role: str, key: str | None, wrapping: str, reason: str, rule: str | None
) -> None:
    with pytest.raises(errors.HwgateError) as caught:
        check_wrap(RULES, operation, role, key, wrapping)
    assert caught.value.reason == reason
    assert caught.value.metadata.get("rule") == rule
    if reason == "KEY_NOT_ESCROWABLE":
        assert caught.value.metadata["key"] == key


def test_no_rules_nothing_is_wrapped() -> None:
    with pytest.raises(errors.KeyNotEscrowable):
        check_wrap((), WRAP, "admin", "anything", "escrow-kek")
    with pytest.raises(errors.PolicyDenied):
        check_wrap((), REWRAP, "admin", None, "escrow-kek")


BASE = """
[[listen]]
unix = "{dir}/admin.sock"
role = "admin"
[policy.roles.admin]
allow = ["*"]
[policy.roles.enrollment]
allow = ["hwgate.v1.HsmService/*"]
"""


def _load(tmp_path: Path, wrap: str) -> object:
    path = tmp_path / "hwgated.toml"
    path.write_text(BASE.format(dir=tmp_path) + wrap)
    return load_config(path)


def test_config_reads_wrap_rules(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[[policy.wrap]]\nkeys = ["km-*"]\nwrapping_keys = ["escrow-kek"]\nroles = ["admin"]\n'
        'operations = ["wrap", "unwrap"]\n'
        '[[policy.wrap]]\nwrapping_keys = ["escrow-kek"]\nroles = ["enrollment"]\n'
        'operations = ["rewrap"]\n',
    )
    assert config.policy.wrap == (  # type: ignore[attr-defined]
        WrapRule(("km-*",), ("escrow-kek",), ("admin",), ("wrap", "unwrap")),
        WrapRule((), ("escrow-kek",), ("enrollment",), ("rewrap",)),
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('keys = ["k"]\nwrapping_keys = ["w"]\nroles = ["admin"]\n', "operations"),
        ('keys = ["k"]\nwrapping_keys = ["w"]\nroles = ["admin"]\noperations = ["copy"]\n',
         "unknown operation"),
        ('keys = ["k"]\nroles = ["admin"]\noperations = ["wrap"]\n', "wrapping_keys"),
        ('wrapping_keys = ["w"]\nroles = ["admin"]\noperations = ["wrap", "rewrap"]\n', "keys"),
        ('keys = ["k"]\nwrapping_keys = ["w"]\nroles = ["ghost"]\noperations = ["wrap"]\n',
         "ghost"),
        ('keys = ["k"]\nwrapping_keys = ["w"]\nroles = ["admin"]\noperations = ["wrap"]\n'
         'extra = 1\n', "extra"),
    ],
)  # fmt: skip
def test_config_refuses_bad_wrap_rules(tmp_path: Path, rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, "[[policy.wrap]]\n" + rule)
