"""Who is calling: the listener's role for local sockets, the client certificate for mTLS.

The identity is resolved once per call by :class:`IdentityInterceptor` and put
in a context variable for the servicers, which use it to own sessions, to check
per-key and per-reader policy and for the audit log.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import grpc

from hwgated.auth.peer_cert import peer_names
from hwgated.config import ListenerConfig, PolicyConfig
from hwgated.errors import GatewayError


class UnauthenticatedPeer(GatewayError):
    reason = "UNAUTHENTICATED_PEER"


@dataclass(frozen=True)
class Caller:
    role: str
    subject: str  # "unix:/run/hwgate/hwgate.sock", or the certificate's SAN URI / CN
    listener: str

    @property
    def owner(self) -> str:
        """The key sessions are owned by."""
        return f"{self.listener}|{self.subject}"


_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("hwgate_caller")

# Calls made in-process (tests, tools) without an interceptor act as this.
ANONYMOUS = Caller(role="", subject="anonymous", listener="")


def current_caller() -> Caller:
    return _CALLER.get(ANONYMOUS)


def set_caller(caller: Caller) -> None:
    _CALLER.set(caller)


def resolve_caller(
    listener: ListenerConfig, policy: PolicyConfig, context: grpc.aio.ServicerContext[Any, Any]
) -> Caller:
    """The caller on *listener*; UnauthenticatedPeer when a certificate maps to no role."""
    if not listener.uses_tls:
        assert listener.role is not None
        where = str(listener.unix) if listener.unix is not None else str(listener.tcp)
        return Caller(role=listener.role, subject=f"local:{where}", listener=where)
    # URI SANs and CNs from the parsed certificate, never gRPC's merged SAN list.
    names = peer_names(context.auth_context())
    for rule in policy.identities:
        if rule.san_uri is not None and rule.san_uri in names.uris:
            return Caller(role=rule.role, subject=rule.san_uri, listener=str(listener.tcp))
        if rule.cn is not None and rule.cn in names.cns:
            return Caller(role=rule.role, subject=f"CN={rule.cn}", listener=str(listener.tcp))
    raise UnauthenticatedPeer("the client certificate maps to no role in the policy")
