"""Who is calling: the local peer's uid (and the listener's role), or the client certificate.

On a Unix listener the identity is the listener's role plus the peer's uid,
from SO_PEERCRED as recorded by the relay in front of the socket
(hwgated.auth.peerfront): two local apps under different uids never share
sessions or limits. A ``[[policy.identity]]`` rule with ``uid`` or ``gid`` gives
that peer another role. The pid is recorded for the audit log only: processes
of one uid are one identity.

The identity is resolved once per call by
:class:`~hwgated.auth.interceptor.IdentityLayer` and put in a context variable
for the servicers, which use it to own sessions, to check per-key and
per-reader policy and for the audit log.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import grpc

from hwgated.auth.peer_cert import peer_names
from hwgated.auth.peerfront import PeerCred, PeerTable
from hwgated.config import ListenerConfig, PolicyConfig
from hwgated.errors import UnauthenticatedPeer as UnauthenticatedPeer  # re-exported


@dataclass(frozen=True)
class Caller:
    role: str
    subject: str  # "uid:1000" on a Unix socket, or the certificate's SAN URI / CN
    listener: str
    peer: str = ""  # audit detail that is not part of the identity, e.g. "pid=123 gid=1000"

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


def local_caller(listener: ListenerConfig, policy: PolicyConfig, cred: PeerCred) -> Caller:
    """The caller behind a Unix socket: a uid/gid rule's role, else the listener's."""
    assert listener.role is not None
    role = listener.role
    for rule in policy.identities:
        if (rule.uid is not None and rule.uid == cred.uid) or (
            rule.gid is not None and rule.gid == cred.gid
        ):
            role = rule.role
            break
    return Caller(
        role=role,
        subject=f"uid:{cred.uid}",
        listener=str(listener.unix),
        peer=f"pid={cred.pid} gid={cred.gid}",
    )


def resolve_caller(
    listener: ListenerConfig,
    policy: PolicyConfig,
    context: grpc.aio.ServicerContext[Any, Any],
    peers: PeerTable | None = None,
) -> Caller:
    """The caller on *listener*; UnauthenticatedPeer when no identity can be established."""
    if listener.unix is not None:
        cred = peers.lookup(context.peer()) if peers is not None else None
        if cred is None:  # not relayed by our front: only root can reach the private socket
            raise UnauthenticatedPeer("the connection carries no peer credentials")
        return local_caller(listener, policy, cred)
    if not listener.uses_tls:
        assert listener.role is not None
        where = str(listener.tcp)
        return Caller(role=listener.role, subject=f"local:{where}", listener=where)
    # URI SANs and CNs from the parsed certificate, never gRPC's merged SAN list.
    names = peer_names(context.auth_context())
    for rule in policy.identities:
        if rule.san_uri is not None and rule.san_uri in names.uris:
            return Caller(role=rule.role, subject=rule.san_uri, listener=str(listener.tcp))
        if rule.cn is not None and rule.cn in names.cns:
            return Caller(role=rule.role, subject=f"CN={rule.cn}", listener=str(listener.tcp))
    raise UnauthenticatedPeer("the client certificate maps to no role in the policy")
