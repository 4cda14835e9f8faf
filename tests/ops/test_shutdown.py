"""SIGTERM: WatchEvents streams end with UNAVAILABLE / SHUTTING_DOWN, then a clean exit."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import grpc
from opsbed import OpsDaemon

from support.daemon import error_info
from support.events import EventCollector


def test_sigterm_ends_watch_streams_with_unavailable(
    start_ops_daemon: Callable[..., OpsDaemon],
) -> None:
    daemon = start_ops_daemon(watchdog_usec=None, extra_daemon="")
    watchers = [EventCollector(daemon.channel()) for _ in range(2)]
    for watcher in watchers:
        watcher.snapshot()
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    for watcher in watchers:
        assert watcher.done.wait(10), "the stream did not end"
        assert watcher.error is not None
        code, reason, _ = error_info(watcher.error)
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    daemon.notify.wait_line("STOPPING=1", after=sent)
    assert daemon.wait() == 0
    assert not daemon.kiosk.exists() and not daemon.admin.exists()
    assert "Traceback" not in daemon.log_text()
