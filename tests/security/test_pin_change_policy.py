"""ChangePin / UnblockPin are policy-controlled per role like every RPC; the test bed's
kiosk role (the config ``hwgate-testbed`` writes) may do both."""

from __future__ import annotations

import pytest

from hwgate_testbed.daemon_config import ROLE_ALLOW
from hwgated.auth.policy import Policy
from hwgated.config import PolicyConfig, RoleConfig

CHANGE, UNBLOCK = "/hwgate.v1.PivService/ChangePin", "/hwgate.v1.PivService/UnblockPin"


def policy(roles: dict[str, list[str]]) -> Policy:
    config = {name: RoleConfig(allow=tuple(allow)) for name, allow in roles.items()}
    return Policy(PolicyConfig(roles=config))


@pytest.mark.parametrize("method", [CHANGE, UNBLOCK])
def test_the_test_beds_kiosk_may_change_and_unblock(method: str) -> None:
    assert policy(ROLE_ALLOW).allows_method("kiosk", method)
    assert not policy(ROLE_ALLOW).allows_method("enrollment", method)


def test_a_role_that_may_only_verify_may_not_change_or_unblock() -> None:
    p = policy({"verifier": ["hwgate.v1.PivService/VerifyPin"], "changer": [CHANGE]})
    assert p.allows_method("verifier", "/hwgate.v1.PivService/VerifyPin")
    assert not p.allows_method("verifier", CHANGE) and not p.allows_method("verifier", UNBLOCK)
    assert p.allows_method("changer", CHANGE) and not p.allows_method("changer", UNBLOCK)
