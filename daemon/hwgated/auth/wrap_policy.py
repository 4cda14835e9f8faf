"""Key wrapping policy: which roles may wrap which keys under which wrapping keys.

Rules come from ``[[policy.wrap]]`` (``hwgated.config.WrapRule``). Like every
rule here it is default deny, and it adds to the per-key use rules
(``[[policy.keys]]``), which still decide whether the caller may name the keys
at all. A key no ``wrap`` rule names is *not marked for escrow*: it can never be
wrapped out, whoever asks and under whatever key (KEY_NOT_ESCROWABLE), so an
operator marks escrowable keys by label once, in one place. The answers are
ordered so a caller learns the first thing that is wrong: the key (not
escrowable), then the role (POLICY_DENIED rule=wrap), then the wrapping key
(POLICY_DENIED rule=wrapping_key). Pure functions of the rules, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from hwgated.config import WrapRule
from hwgated.errors import KeyNotEscrowable, PolicyDenied
from hwgated.patterns import any_match

WRAP = "wrap"
UNWRAP = "unwrap"
REWRAP = "rewrap"


def check_marked(rules: Sequence[WrapRule], key: str) -> None:
    """KEY_NOT_ESCROWABLE unless some ``wrap`` rule names *key*: checked before anything
    else about a WrapKey, so an unmarked key is refused the same way whatever is asked."""
    if not any(WRAP in rule.operations and any_match(key, rule.keys) for rule in rules):
        raise KeyNotEscrowable(
            f"key {key!r} is not marked for escrow: it can never be wrapped out", key=key
        )


def check_wrap(
    rules: Sequence[WrapRule], operation: str, role: str, key: str | None, wrapping_key: str
) -> None:
    """Raise unless *role* may do *operation* on *key* (a label; None for ``rewrap``,
    whose key exists only wrapped) with the wrapping key labelled *wrapping_key*."""
    matching = [
        rule
        for rule in rules
        if operation in rule.operations and (key is None or any_match(key, rule.keys))
    ]
    if operation == WRAP and key is not None:
        check_marked(rules, key)
    granted = [rule for rule in matching if role in rule.roles]
    if not granted:
        what = f"key {key!r}" if key is not None else "escrowed keys"
        raise PolicyDenied(f"role {role!r} may not {operation} {what}", rule="wrap")
    if not any(any_match(wrapping_key, rule.wrapping_keys) for rule in granted):
        raise PolicyDenied(
            f"role {role!r} may not {operation} with wrapping key {wrapping_key!r}",
            rule="wrapping_key",
        )
