"""Kept for imports from before the edge package: see hwgated.edge.handlers."""

from hwgated.edge.handlers import Kind, rewrap

__all__ = ["Kind", "rewrap"]
