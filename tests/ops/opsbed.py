"""Helpers for the operations tests: a fake systemd notify socket, a daemon handle,
and the config they run on."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hwgate_testbed.timing import scaled
from support.daemon import TEST_POLICY, ready

KIOSK_ALLOW = '["hwgate.v1.CardService/*", "hwgate.v1.PivService/*"]'


class FakeNotify:
    """The systemd side of sd_notify: an AF_UNIX datagram socket collecting messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []  # (monotonic time, one KEY=value line)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            now = time.monotonic()
            with self._cond:
                for line in data.decode().splitlines():
                    self.messages.append((now, line))
                self._cond.notify_all()

    def wait_for(
        self,
        predicate: Callable[[str], bool],
        timeout: float = 15.0,
        after: float = 0.0,
        *,
        scale: bool = True,
    ) -> float:
        """Monotonic time of the first message after *after* matching *predicate*.

        *timeout* is stretched by HWGATE_TEST_TIMEOUT_SCALE unless *scale* is False
        (a window in which a message must *not* come keeps its length)."""
        deadline = time.monotonic() + (scaled(timeout) if scale else timeout)
        with self._cond:
            while True:
                for when, line in self.messages:
                    if when >= after and predicate(line):
                        return when
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching notify message; got {self.lines()}")
                self._cond.wait(remaining)

    def wait_line(
        self, line: str, timeout: float = 15.0, after: float = 0.0, *, scale: bool = True
    ) -> float:
        return self.wait_for(lambda got: got == line, timeout, after, scale=scale)

    def lines(self, after: float = 0.0) -> list[str]:
        with self._cond:
            return [line for when, line in self.messages if when >= after]

    def times(self, line: str) -> list[float]:
        with self._cond:
            return [when for when, got in self.messages if got == line]

    def close(self) -> None:
        self.sock.close()


@dataclass
class OpsDaemon:
    proc: subprocess.Popen[bytes]
    config: Path
    kiosk: Path
    admin: Path
    log: Path
    notify: FakeNotify
    metrics_port: int | None = None
    channels: list[grpc.Channel] = field(default_factory=list)

    def channel(self, admin: bool = False) -> grpc.Channel:
        channel = grpc.insecure_channel(f"unix:{self.admin if admin else self.kiosk}")
        ready(channel, self.proc)
        self.channels.append(channel)
        return channel

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout=scaled(timeout))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_ops_config(
    directory: Path,
    *,
    kiosk_allow: str = KIOSK_ALLOW,
    metrics_port: int | None = None,
    extra_daemon: str = "",
    extra: str = "",
) -> tuple[Path, Path, Path]:
    """A config with a kiosk and an admin socket; the kiosk role's RPCs as given."""
    kiosk, admin = directory / "hwgate.sock", directory / "admin.sock"
    config = directory / "hwgated.toml"
    metrics = f'metrics = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    policy = TEST_POLICY.replace(KIOSK_ALLOW, kiosk_allow)
    config.write_text(
        f'[daemon]\nlog_level = "debug"\ngrace_period = 1\n{metrics}{extra_daemon}'
        f'[[listen]]\nunix = "{kiosk}"\nrole = "kiosk"\n'
        f'[[listen]]\nunix = "{admin}"\nmode = "0600"\nrole = "admin"\n'
        f"{extra}\n{policy}"
    )
    return config, kiosk, admin
