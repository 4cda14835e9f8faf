"""Run a real hwgated process and talk to it over its socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from hwgate_testbed.timing import scaled


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
        ready(channel, self.proc)
        return channel

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=scaled(timeout))


# A daemon is up in about a second on an idle machine; with every core busy its HSM
# workers (a spawned Python each, importing python-pkcs11) can take tens of seconds.
# Only a daemon that never comes up waits this long: one that exits fails at once.
READY_TIMEOUT = 60.0  # seconds, scaled


def ready(
    channel: grpc.Channel,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = READY_TIMEOUT,
) -> None:
    """Wait until *channel* connects; give up early if *proc* (the daemon) has exited.

    Raises grpc.FutureTimeoutError like ``channel_ready_future(...).result``."""
    deadline = time.monotonic() + scaled(timeout)
    future = grpc.channel_ready_future(channel)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (proc is not None and proc.poll() is not None):
                raise grpc.FutureTimeoutError()
            try:
                future.result(timeout=min(left, 0.5))
                return
            except grpc.FutureTimeoutError:
                continue
    finally:
        future.cancel()


def start_daemon(config: Path, socket: Path, log: Path) -> DaemonProc:
    from support.logscan import register_log

    register_log(log)  # scanned for PINs and secrets at the end of the session
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
    # Card changes from now on wait for this daemon's own view of the readers.
    from support.daemonview import DaemonView, reader_patterns, register

    alive = daemon.proc.poll
    register(DaemonView(str(log), daemon.target, lambda: alive() is None, reader_patterns(config)))
    return daemon


TEST_POLICY = """
[policy.roles.kiosk]
allow = ["hwgate.v1.CardService/*", "hwgate.v1.PivService/*"]
[policy.roles.admin]
allow = ["*"]
[[policy.readers]]
pattern = "*"
roles = ["kiosk", "admin"]
"""


def write_config(
    directory: Path, *, pcsc: str = "", extra: str = "", log_level: str = "debug"
) -> tuple[Path, Path, Path]:
    """A daemon config with a kiosk and an admin Unix socket in *directory*.

    Returns (config, kiosk socket, admin socket).
    """
    kiosk, admin = directory / "hwgate.sock", directory / "admin.sock"
    config = directory / "hwgated.toml"
    config.write_text(
        f'[daemon]\nlog_level = "{log_level}"\ngrace_period = 1\n'
        f'[[listen]]\nunix = "{kiosk}"\nrole = "kiosk"\n'
        f'[[listen]]\nunix = "{admin}"\nmode = "0600"\nrole = "admin"\n'
        f"[pcsc]\n{pcsc}\n{extra}\n{TEST_POLICY}"
    )
    return config, kiosk, admin


def error_info(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(code, ErrorInfo.reason, ErrorInfo.metadata) of a failed call."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {err}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "hwgate.v1"
            return err.code(), info.reason, dict(info.metadata)
    raise AssertionError(f"no ErrorInfo in {status}")
