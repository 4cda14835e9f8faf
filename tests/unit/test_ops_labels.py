"""The labels the operations layer puts on its metrics, and the policy's method answers.

Both are computed on every RPC and were made cheaper (answers kept per request
type, per role and method): these pin what they must still say.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from hwgate.v1 import common_pb2, hsm_pb2
from hwgated.auth.policy import Policy
from hwgated.config import PolicyConfig, RoleConfig
from hwgated.ops.interceptor import _code_name, _mechanism


def test_the_mechanism_label_names_the_requests_algorithm() -> None:
    ecdsa = hsm_pb2.HsmServiceSignRequest(algorithm=common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256)
    rsa = hsm_pb2.HsmServiceSignRequest(algorithm=common_pb2.SIGNATURE_ALGORITHM_RSA_PSS_SHA256)
    assert _mechanism(ecdsa) == "SIGNATURE_ALGORITHM_ECDSA_SHA256"
    assert _mechanism(rsa) == "SIGNATURE_ALGORITHM_RSA_PSS_SHA256"  # same type, its own value
    assert _mechanism(ecdsa) == "SIGNATURE_ALGORITHM_ECDSA_SHA256"  # asked again


def test_an_unknown_number_or_a_request_without_algorithm() -> None:
    unknown = hsm_pb2.HsmServiceSignRequest()
    unknown.algorithm = 999  # type: ignore[assignment]  # open enum: a newer client's value
    assert _mechanism(unknown) == "999"
    assert _mechanism(health_pb2.HealthCheckRequest()) == ""
    assert _mechanism(object()) == ""


class _Context:
    def __init__(self, code: Any) -> None:
        self._code = code

    def code(self) -> Any:
        return self._code


def test_the_code_label() -> None:
    assert _code_name(_Context(None), "OK") == "OK"
    assert _code_name(_Context(grpc.StatusCode.NOT_FOUND), "OK") == "NOT_FOUND"
    assert _code_name(_Context(grpc.StatusCode.PERMISSION_DENIED.value[0]), "OK") == (
        "PERMISSION_DENIED"
    )


def test_method_answers_are_per_role_and_the_table_stays_bounded() -> None:
    p = Policy(PolicyConfig(roles={"kiosk": RoleConfig(allow=("hwgate.v1.CardService/*",))}))
    transmit = "/hwgate.v1.CardService/Transmit"
    sign = "/hwgate.v1.HsmService/Sign"
    for _ in range(2):  # the kept answer is the computed one
        assert p.allows_method("kiosk", transmit)
        assert not p.allows_method("kiosk", sign)
        assert not p.allows_method("enrollment", transmit)
        assert p.allows_method("enrollment", "/grpc.health.v1.Health/Check")  # always allowed
    for n in range(5000):
        assert not p.allows_method("kiosk", f"/x.Y/M{n}")
    assert len(p._method_answers) <= 4096
