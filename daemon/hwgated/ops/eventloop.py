"""The event loop hwgated runs on: uvloop when it is installed, else asyncio's own.

Why uvloop: on a serial call the daemon's CPU is the call's latency, and most
of it is the loop's own work (grpc.aio's completion callbacks, the peer
relay's reads and writes, the HSM workers' replies). Under uvloop the daemon
spent ~15 % less CPU per Health/Check and per HSM Sign, A/B on this machine
(measured against the client's CPU for the same calls, which is the same in
both). Everything the daemon asks of its loop (signal handlers, add_reader on
a worker's sentinel, protocols on Unix sockets, run_in_executor) is in
uvloop's asyncio-compatible API. ``[daemon] event_loop = "asyncio"`` keeps the
standard loop, e.g. to rule uvloop out when chasing a bug.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def chosen(setting: str) -> str:
    """``"uvloop"`` or ``"asyncio"`` for the ``event_loop`` setting; "auto" picks uvloop
    when it can be imported. An explicit "uvloop" that is missing is refused by the
    config loader (hwgated.config), before anything starts."""
    if setting == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return setting


def run(main: Coroutine[Any, Any, T], setting: str = "auto") -> T:
    """Run *main* to completion on the loop *setting* names (see :func:`chosen`)."""
    if chosen(setting) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
