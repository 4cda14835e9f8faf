"""auth/policy.py in-process: globs, first match, default deny, what is always allowed."""

from __future__ import annotations

from typing import Any

import pytest

from hwgated.auth.identity import Caller
from hwgated.auth.policy import Policy, PolicyHolder
from hwgated.config import PolicyConfig, ResourceRule, RoleConfig
from hwgated.errors import PolicyDenied


def policy(**overrides: object) -> Policy:
    config: dict[str, Any] = {
        "roles": {
            "kiosk": RoleConfig(allow=("hwgate.v1.CardService/*", "/hwgate.v1.PivService/Verify*")),
            "enrollment": RoleConfig(allow=("hwgate.v1.HsmService/Sign",)),
            "admin": RoleConfig(allow=("*",)),
            "nobody": RoleConfig(allow=()),
        },
        "keys": (
            ResourceRule("issuing-ca", ("enrollment",)),
            ResourceRule("issuing-*", ("admin",)),  # never reached for issuing-ca: first match
            ResourceRule("signer-[0-9]", ("enrollment", "kiosk")),
        ),
        "readers": (
            ResourceRule("Virtual PCD 00 0[01]", ("kiosk",)),
            ResourceRule("*", ("admin",)),
        ),
    }
    config.update(overrides)
    return Policy(PolicyConfig(**config))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "method", "allowed"),
    [
        ("kiosk", "/hwgate.v1.CardService/Transmit", True),
        ("kiosk", "/hwgate.v1.PivService/VerifyPin", True),  # leading "/" in the rule is fine
        ("kiosk", "/hwgate.v1.PivService/Sign", False),
        ("kiosk", "/hwgate.v1.CardServiceX/Transmit", False),  # a service is not a prefix
        ("kiosk", "/hwgate.v1.HsmService/Sign", False),
        ("enrollment", "/hwgate.v1.HsmService/Sign", True),
        ("enrollment", "/hwgate.v1.HsmService/SignStream", False),  # exact names are exact
        ("admin", "/hwgate.v1.HsmService/DeleteKey", True),
        ("nobody", "/hwgate.v1.CardService/ListReaders", False),
        ("undefined", "/hwgate.v1.CardService/ListReaders", False),
        ("", "/hwgate.v1.CardService/ListReaders", False),  # the anonymous caller
    ],
)
def test_method_globs_and_default_deny(role: str, method: str, allowed: bool) -> None:
    assert policy().allows_method(role, method) is allowed


def test_star_in_method_glob_is_not_a_path_separator_guard() -> None:
    # fnmatch's "*" matches "/" too: "hwgate.v1.*" would open every service. Documented
    # here so a policy author's expectation is pinned by a test.
    p = policy(roles={"r": RoleConfig(allow=("hwgate.v1.Card*",))})
    assert p.allows_method("r", "/hwgate.v1.CardService/Transmit")
    assert not p.allows_method("r", "/hwgate.v1.HsmService/Sign")


@pytest.mark.parametrize(
    "method",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ],
)
def test_health_and_reflection_always_allowed(method: str) -> None:
    p = policy()
    assert p.allows_method("nobody", method)
    assert p.allows_method("undefined", method)
    assert not p.allows_method("nobody", method.replace("grpc.", "grpcx.", 1))


@pytest.mark.parametrize(
    ("role", "key", "allowed"),
    [
        ("enrollment", "issuing-ca", True),
        ("admin", "issuing-ca", False),  # first matching rule decides, no fall-through
        ("admin", "issuing-ca2", True),
        ("enrollment", "issuing-ca2", False),
        ("kiosk", "signer-1", True),
        ("kiosk", "signer-10", False),  # no rule matches: default deny
        ("admin", "unlisted", False),
        ("kiosk", "ISSUING-CA", False),  # case-sensitive on every platform
    ],
)
def test_key_rules_first_match(role: str, key: str, allowed: bool) -> None:
    assert policy().allows_key(role, key) is allowed


def test_reader_rules_first_match_and_default_deny() -> None:
    p = policy()
    assert p.allows_reader("kiosk", "Virtual PCD 00 00")
    assert p.allows_reader("kiosk", "Virtual PCD 00 01")
    assert not p.allows_reader("kiosk", "Virtual PCD 00 02")
    assert p.allows_reader("admin", "Virtual PCD 00 02")
    assert not p.allows_reader("admin", "Virtual PCD 00 00")
    empty = policy(readers=())
    assert not empty.allows_reader("admin", "anything")


@pytest.mark.parametrize(
    ("check", "rule"),
    [
        (lambda p, c: p.check_method(c, "/hwgate.v1.HsmService/DeleteKey"), "rpc"),
        (lambda p, c: p.check_key("secret-master", c), "key"),
        (lambda p, c: p.check_reader("Attacker Reader", c), "reader"),
    ],
)
def test_denials_name_only_the_rule_class(check: object, rule: str) -> None:
    caller = Caller(role="kiosk", subject="spiffe://hwgate.test/kiosk", listener="x")
    with pytest.raises(PolicyDenied) as err:
        check(policy(), caller)  # type: ignore[operator]
    assert err.value.reason == "POLICY_DENIED"
    assert err.value.metadata == {"rule": rule}  # no pattern, no role list, no subject


def test_checks_default_to_the_current_caller() -> None:
    # No interceptor ran: the anonymous caller has no role and is denied everything.
    with pytest.raises(PolicyDenied):
        policy().check_key("signer-1")
    with pytest.raises(PolicyDenied):
        policy().check_reader("Virtual PCD 00 00")


def test_holder_swaps_the_whole_policy() -> None:
    holder = PolicyHolder(policy())
    before = holder.current
    assert before.allows_method("kiosk", "/hwgate.v1.CardService/Transmit")
    holder.replace(policy(roles={"kiosk": RoleConfig(allow=())}))
    assert not holder.current.allows_method("kiosk", "/hwgate.v1.CardService/Transmit")
    assert before.allows_method("kiosk", "/hwgate.v1.CardService/Transmit")  # old one unchanged
