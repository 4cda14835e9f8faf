"""sd_notify: tell systemd (Type=notify) what the daemon is doing.

Only when ``NOTIFY_SOCKET`` is set; otherwise every call is a no-op, so the
daemon behaves the same in a terminal, in tests and under systemd. Messages go
through systemd-python's ``daemon.notify``; if that optional dependency is
missing a plain datagram is sent instead, because a Type=notify unit whose
daemon never says READY=1 is killed at start-up for a missing Python package.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def _fallback_send(address: str, message: str) -> bool:
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), target)
    return True


class Notifier:
    """Sends sd_notify messages; ``enabled`` tells whether anyone listens."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._status = ""

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> bool:
        """Send one message (``KEY=value`` lines); False when not sent."""
        if not self.address:
            return False
        try:
            try:
                # By name: the repository's systemd/ folder (unit files) would
                # otherwise pass for this package in the type checker's eyes.
                daemon = importlib.import_module("systemd.daemon")
            except ImportError:
                return _fallback_send(self.address, message)
            return bool(daemon.notify(message))
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False

    def ready(self) -> None:
        self.send("READY=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) tie READY=1 to this reload.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """STATUS=, sent only when it changed (one line; newlines would split it)."""
        line = " ".join(text.split())
        if line != self._status:
            self._status = line
            self.send(f"STATUS={line}")


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds, or None when systemd wants no pings from us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
