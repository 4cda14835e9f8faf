"""Audit an RPC's act with its outcome: ``ok`` or the error reason it failed with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from hwgated.auth.audit import audit


@contextlib.contextmanager
def audited(action: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Record *action* once the block ends; the block may add fields to the dict."""
    extra: dict[str, Any] = {}
    try:
        yield extra
    except BaseException as exc:
        audit(action, getattr(exc, "reason", None) or type(exc).__name__, **fields, **extra)
        raise
    audit(action, "ok", **fields, **extra)
