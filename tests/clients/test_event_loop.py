"""The daemon's event loop, seen from outside (hwgated.ops.eventloop)."""

from __future__ import annotations

from pathlib import Path

from clients_support import Gateway


def test_the_daemon_runs_on_uvloop(gateway: Gateway) -> None:
    """The default ([daemon] event_loop = "auto", uvloop a dependency): uvloop's
    extension is mapped into the running hwgated, so the benchmarks' numbers and
    every test here are for that loop."""
    maps = Path(f"/proc/{gateway.proc.proc.pid}/maps").read_text()
    assert "/uvloop/" in maps
