"""Audit an RPC's act with its outcome, the same way for every service.

The outcome is "ok", "CANCELLED" when the call ended because its client went
away (or its deadline passed) while the act ran, or else the reason of the
error it failed with. A bug (any other exception) is "INTERNAL_ERROR", like
the status the client sees. An error may carry an ``audit_outcome`` that is
truer than what the client is told (a key hidden by policy is answered as
"not found" but audited as "POLICY_DENIED").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from hwgated.auth.audit import audit
from hwgated.edge.refusals import mark_audited
from hwgated.edge.status import as_hwgate

CANCELLED = "CANCELLED"


def outcome(exc: BaseException) -> str:
    """The audit outcome of a failure: the true reason, even where the client sees another."""
    if isinstance(exc, asyncio.CancelledError):
        return CANCELLED
    error = as_hwgate(exc)
    if error is None:
        return "INTERNAL_ERROR"
    return error.audit_outcome or error.reason


@contextlib.contextmanager
def audited(action: str, **fields: object) -> Iterator[dict[str, object]]:
    """Record *action* once the block ends, with its outcome; the block may add fields to
    the yielded dict (they are recorded whether it ends well or not)."""
    extra: dict[str, object] = {}
    try:
        yield extra
    except BaseException as exc:
        audit(action, outcome(exc), **fields, **extra)
        mark_audited(exc)  # a refusal recorded here is not recorded again as rpc.denied
        raise
    audit(action, "ok", **fields, **extra)
