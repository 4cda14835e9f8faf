"""Which log level is in force, and grpc's own chatter kept out of the daemon's debug log.

Before: ``hwgated --log-level info`` with ``log_level = "debug"`` in the file logged
"reloaded ...: log level debug" on SIGHUP (the option did win, the line said the
opposite), and at debug grpc's aio layer logged "Loaded running loop" several times
per RPC, 53 of the 58 lines of a short daemon run.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

import pytest
from opsbed import OpsDaemon

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgated.logsetup import TRACE, effective_level, library_level

POLICY_LINE = "policy in force: roles"  # hwgated.server, DEBUG, right after a reload


def _reload(daemon: OpsDaemon) -> None:
    sent = time.monotonic()
    daemon.signal(signal.SIGHUP)
    reloading = daemon.notify.wait_line("RELOADING=1", after=sent)
    daemon.notify.wait_line("READY=1", after=reloading)


def _some_rpcs(daemon: OpsDaemon) -> None:
    stub = card_pb2_grpc.CardServiceStub(daemon.channel(admin=True))
    for _ in range(3):
        stub.ListReaders(card_pb2.ListReadersRequest(), timeout=10)


def test_command_line_level_wins_over_the_file_also_after_sighup(
    start_ops_daemon: Callable[..., OpsDaemon],
) -> None:
    daemon = start_ops_daemon(watchdog_usec=None, args=("--log-level", "info"))  # file: debug
    _some_rpcs(daemon)
    _reload(daemon)
    text = daemon.log_text()
    assert "log level info (--log-level; the file's 'debug' is overridden)" in text, text
    assert " DEBUG " not in text, "the file's debug level must not apply, before or after"


def test_file_level_applies_without_the_option_and_grpc_stays_quiet(
    start_ops_daemon: Callable[..., OpsDaemon],
) -> None:
    daemon = start_ops_daemon(watchdog_usec=None)  # the file says debug
    _some_rpcs(daemon)
    _reload(daemon)
    text = daemon.log_text()
    assert "log level debug (log_level)" in text
    assert POLICY_LINE in text, "the daemon's own debug lines are there"
    grpc_debug = [line for line in text.splitlines() if " DEBUG " in line and " grpc" in line]
    assert grpc_debug == [], grpc_debug[:3]
    assert "Loaded running loop" not in text


def test_effective_level() -> None:
    assert effective_level(None, "debug") == "debug"
    assert effective_level("info", "debug") == "info"
    assert effective_level("trace", "error") == "trace"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("trace", TRACE),  # asked for everything: grpc's debug lines too
        ("debug", logging.WARNING),
        ("info", logging.WARNING),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
    ],
)
def test_library_level(level: str, expected: int) -> None:
    assert library_level(level) == expected
