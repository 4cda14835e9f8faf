"""hwgate.v1.HsmService: sign, derive and manage keys in the configured PKCS#11 tokens."""

from __future__ import annotations

from collections.abc import Mapping

from hwgate.v1 import hsm_pb2_grpc
from hwgated.auth.policy import PolicyHolder
from hwgated.hsm import HsmPool


class HsmServicer(hsm_pb2_grpc.HsmServiceServicer):
    def __init__(self, pools: Mapping[str, HsmPool], policy: PolicyHolder) -> None:
        self._policy = policy
        self._pools = pools
