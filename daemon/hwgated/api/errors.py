"""Kept for imports from before the edge package: everything lives in hwgated.edge.status."""

from hwgated.edge.status import (
    DOMAIN,
    REASON_CODES,
    abort,
    classify,
    status_for,
    stream,
    timeout_of,
    unary,
)

__all__ = [
    "DOMAIN",
    "REASON_CODES",
    "abort",
    "classify",
    "status_for",
    "stream",
    "timeout_of",
    "unary",
]
