"""hwgate.v1.PivService: card identity, PIN, proof of possession, card signatures."""

from __future__ import annotations

from hwgate.v1 import piv_pb2_grpc
from hwgated.auth.policy import PolicyHolder
from hwgated.pcsc.manager import CardManager


class PivServicer(piv_pb2_grpc.PivServiceServicer):
    def __init__(self, manager: CardManager, policy: PolicyHolder) -> None:
        self._policy = policy
        self._manager = manager
