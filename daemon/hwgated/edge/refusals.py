"""Audit every refusal by policy, whatever the RPC, once.

What is audited (docs/audit.md): acts on cards, PINs and keys, each with its
outcome (``audited``), and every call the policy refuses: a method the caller's
role may not call, a caller with no identity (an mTLS certificate the policy maps
to no role), a key or reader the role may not use. Successful read-only calls
(ListReaders, WatchEvents, GetCardInfo, ListKeys, GetPublicKey, health,
reflection) are not audited: they change nothing and reveal no secret, and a
load balancer's health checks every few seconds would bury the trail.

Refusals are caught where every error leaves the daemon (``status.abort``), so a
read-only RPC's refusal is audited without code in its servicer; one that an
``audited`` block already recorded (as its act's outcome) is not recorded twice.
The interceptor names the RPC for the record (``set_method``).
"""

from __future__ import annotations

import contextlib
import contextvars

from hwgated import errors
from hwgated.auth.audit import audit

ACTION = "rpc.denied"
REFUSALS = frozenset({"POLICY_DENIED", "UNAUTHENTICATED_PEER"})
_MARK = "hwgate_audited"

_METHOD: contextvars.ContextVar[str] = contextvars.ContextVar("hwgate_method", default="")


def set_method(method: str) -> None:
    """The RPC this call is (the interceptor sets it, like the caller)."""
    _METHOD.set(method.lstrip("/"))


def mark_audited(exc: BaseException) -> None:
    """*exc* is already in the audit log, as the outcome of an audited act."""
    with contextlib.suppress(AttributeError):
        setattr(exc, _MARK, True)


def audit_refusal(exc: BaseException) -> None:
    """Record *exc* if it is a refusal by policy that no audited block recorded."""
    if not isinstance(exc, errors.HwgateError) or getattr(exc, _MARK, False):
        return
    outcome = exc.audit_outcome or exc.reason
    if outcome not in REFUSALS:
        return
    mark_audited(exc)
    audit(ACTION, outcome, method=_METHOD.get(), rule=exc.metadata.get("rule"))
