"""Ending multiprocessing's resource tracker with the daemon, not after it.

Starting a worker with the "spawn" method also starts multiprocessing's
resource tracker, a helper process that lives until every holder of its pipe
has closed it. The workers hold it too, so it can only notice the end after
they and the daemon are gone: under systemd (KillMode=mixed) the daemon's exit
finds it still running, and systemd SIGKILLs it at every stop ("Killing process
… with signal SIGKILL"). The workers never create shared memory or semaphores,
so the tracker has nothing to clean up: once the pools are closed the daemon
closes its end and reaps the tracker itself, and the stop leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
from multiprocessing import resource_tracker

log = logging.getLogger("hwgated.hsm")


def _stop_tracker() -> None:
    tracker = resource_tracker._resource_tracker  # the process-wide instance
    stop = getattr(tracker, "_stop", None)  # CPython 3.8+: close the pipe, waitpid
    if stop is None or getattr(tracker, "_fd", None) is None:
        return
    try:
        stop()
    except (OSError, ChildProcessError) as exc:
        log.debug("resource tracker: %s", exc)


async def stop_resource_tracker(timeout: float = 5.0) -> None:
    """Close our end of the tracker's pipe and reap it (call after every worker exited)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(_stop_tracker), timeout)
    except TimeoutError:
        log.warning("multiprocessing's resource tracker did not exit within %.0f s", timeout)
