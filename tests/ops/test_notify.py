"""sd_notify as systemd sees it: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from opsbed import FakeNotify, OpsDaemon

IDLE_STATUS = "STATUS=pcscd up; 2 readers, 0 cards; no hsm"


def no_message(notify: FakeNotify, line: str, seconds: float) -> bool:
    """True when *line* does not arrive within *seconds* from now (a bounded wait)."""
    try:
        notify.wait_line(line, timeout=seconds, after=time.monotonic(), scale=False)
    except AssertionError:
        return True
    return False


def test_lifecycle_messages(start_ops_daemon: Callable[..., OpsDaemon]) -> None:
    daemon = start_ops_daemon(watchdog_usec=1_000_000)
    ready = daemon.notify.times("READY=1")[0]
    # The listeners are bound when READY=1 arrives: a client connects at once.
    daemon.channel().close()
    daemon.notify.wait_line(IDLE_STATUS)
    # WATCHDOG_USEC=1s: a ping every 0.5 s.
    first = daemon.notify.wait_line("WATCHDOG=1", timeout=5, after=ready)
    second = daemon.notify.wait_line("WATCHDOG=1", timeout=5, after=first + 0.2)
    assert 0.3 < second - first < 1.0

    sent = time.monotonic()
    daemon.signal(signal.SIGHUP)
    reloading = daemon.notify.wait_line("RELOADING=1", after=sent)
    daemon.notify.wait_line("READY=1", after=reloading)
    assert any(line.startswith("MONOTONIC_USEC=") for line in daemon.notify.lines(after=sent))

    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    daemon.notify.wait_line("STOPPING=1", after=sent)
    assert daemon.wait() == 0
    assert not daemon.kiosk.exists()


def test_status_follows_cards(start_ops_daemon: Callable[..., OpsDaemon], cards: object) -> None:
    daemon = start_ops_daemon(watchdog_usec=None)
    daemon.notify.wait_line(IDLE_STATUS)
    cards.insert(0)  # type: ignore[attr-defined]
    inserted = daemon.notify.wait_line("STATUS=pcscd up; 2 readers, 1 card; no hsm")
    cards.remove(0)  # type: ignore[attr-defined]
    daemon.notify.wait_line(IDLE_STATUS, after=inserted)


def test_no_watchdog_pings_without_watchdog_usec(
    start_ops_daemon: Callable[..., OpsDaemon],
) -> None:
    daemon = start_ops_daemon(watchdog_usec=None)
    daemon.notify.wait_line(IDLE_STATUS)
    assert no_message(daemon.notify, "WATCHDOG=1", 1.5)


def test_wedged_monitor_stops_the_watchdog(start_ops_daemon: Callable[..., OpsDaemon]) -> None:
    daemon = start_ops_daemon(watchdog_usec=1_000_000, env={"HWGATE_TEST_HOOKS": "1"})
    first = daemon.notify.wait_line("WATCHDOG=1", timeout=5)
    daemon.notify.wait_line("WATCHDOG=1", timeout=5, after=first + 0.2)
    daemon.signal(signal.SIGUSR2)
    # The monitor wakes at least every second and counts as stuck after 3 s without
    # a wake-up. Pings may go on until then; afterwards a 2.5 s stretch (5 ping
    # intervals) must pass without one, well within 10 s.
    deadline = time.monotonic() + 10
    while not no_message(daemon.notify, "WATCHDOG=1", 2.5):
        assert time.monotonic() < deadline, "WATCHDOG=1 kept coming with a wedged monitor"
    assert daemon.proc.poll() is None, "the daemon itself must not exit; systemd restarts it"
    log = daemon.log_text()
    assert "watchdog ping withheld" in log
    assert "PC/SC monitor thread has not woken" in log
