"""The systemd watchdog: WATCHDOG=1 only while every part of the daemon is alive.

The ping runs as a task on the asyncio loop, so a blocked loop stops it by
itself. The other parts are asked through probes (a callable returning None
when healthy, or why not): the PC/SC monitor thread's heartbeat and the HSM
pools' supervisor tasks. When a probe fails the ping is withheld and systemd,
after WatchdogSec, kills and restarts the daemon (Restart=on-failure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from hwgated.ops.notify import Notifier

log = logging.getLogger(__name__)

Probe = Callable[[], str | None]


class Watchdog:
    """Pings every ``interval`` seconds while all probes pass."""

    def __init__(self, notifier: Notifier, interval: float, probes: Sequence[Probe]) -> None:
        self._notifier = notifier
        self._interval = interval
        self._probes = tuple(probes)
        self._withheld: tuple[str, ...] = ()

    def problems(self) -> tuple[str, ...]:
        found = []
        for probe in self._probes:
            try:
                problem = probe()
            except Exception as exc:  # a broken probe is a failed probe
                problem = f"probe failed: {exc!r}"
            if problem:
                found.append(problem)
        return tuple(found)

    def tick(self) -> bool:
        """One check; True when WATCHDOG=1 was sent."""
        problems = self.problems()
        if problems != self._withheld:
            if problems:
                log.error("watchdog ping withheld: %s", "; ".join(problems))
            else:
                log.warning("watchdog: all parts responsive again")
            self._withheld = problems
        if problems:
            return False
        self._notifier.watchdog()
        return True

    async def run(self) -> None:
        log.info("systemd watchdog: pinging every %.2fs", self._interval)
        while True:
            self.tick()
            await asyncio.sleep(self._interval)
