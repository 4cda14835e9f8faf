"""Run a real hwgated process and talk to it over its socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass
class DaemonProc:
    proc: subprocess.Popen[bytes]
    socket: Path
    log: Path

    @property
    def target(self) -> str:
        return f"unix:{self.socket}"

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.target)
        grpc.channel_ready_future(channel).result(timeout=15)
        return channel

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def start_daemon(config: Path, socket: Path, log: Path) -> DaemonProc:
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwgated", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    daemon = DaemonProc(proc, socket, log)
    try:
        daemon.channel().close()
    except grpc.FutureTimeoutError:
        daemon.stop(signal.SIGKILL)
        raise AssertionError(f"hwgated did not come up:\n{log.read_text()}") from None
    return daemon
