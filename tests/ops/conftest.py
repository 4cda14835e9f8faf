"""Fixtures for the operations tests: hwgated started the way systemd starts it
(NOTIFY_SOCKET pointing at a fake notify socket, WATCHDOG_USEC)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opsbed import FakeNotify, OpsDaemon, free_port, write_ops_config

from hwgate_testbed.timing import scaled
from support.daemonview import process_alive, watch


@pytest.fixture
def start_ops_daemon(testbed: object, tmp_path: Path) -> Iterator[Callable[..., OpsDaemon]]:
    """Start hwgated as systemd would; every daemon started is killed at teardown."""
    started: list[OpsDaemon] = []
    views = contextlib.ExitStack()

    def start(
        *,
        watchdog_usec: int | None = 1_000_000,
        metrics: bool = False,
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
        **config_args: str,
    ) -> OpsDaemon:
        port = free_port() if metrics else None
        config, kiosk, admin = write_ops_config(tmp_path, metrics_port=port, **config_args)
        notify = FakeNotify(tmp_path / "notify.sock")
        log = tmp_path / "hwgated.log"
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": str(notify.path)}
        environ.pop("WATCHDOG_USEC", None)
        environ.pop("JOURNAL_STREAM", None)
        if watchdog_usec is not None:
            environ["WATCHDOG_USEC"] = str(watchdog_usec)
        environ.update(env or {})
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*launcher, sys.executable, "-m", "hwgated", "--config", str(config), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
            )
        daemon = OpsDaemon(proc, config, kiosk, admin, log, notify, port)
        started.append(daemon)
        try:
            notify.wait_line("READY=1", timeout=scaled(60))  # a stress run needed > 30 s
        except AssertionError:
            raise AssertionError(f"hwgated never said READY=1:\n{daemon.log_text()}") from None
        # Card changes wait for its view (admin socket: the kiosk role may be cut down).
        views.enter_context(watch("hwgated", f"unix:{admin}", process_alive(proc)))
        return daemon

    with views:
        yield start
    for daemon in started:
        for channel in daemon.channels:
            channel.close()
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(timeout=15)
        daemon.notify.close()
