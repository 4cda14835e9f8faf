"""SIGHUP: a valid new policy applies without dropping connections; an invalid one is refused."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import grpc
import pytest
from opsbed import KIOSK_ALLOW, OpsDaemon, write_ops_config

from hwgate.v1 import card_pb2, card_pb2_grpc
from support.daemon import error_info


def _reload(daemon: OpsDaemon) -> None:
    """SIGHUP and wait for the reload to finish (READY=1 after RELOADING=1)."""
    sent = time.monotonic()
    daemon.signal(signal.SIGHUP)
    reloading = daemon.notify.wait_line("RELOADING=1", after=sent)
    daemon.notify.wait_line("READY=1", after=reloading)


def _denied(stub: card_pb2_grpc.CardServiceStub) -> bool:
    try:
        stub.ListReaders(card_pb2.ListReadersRequest(), timeout=5)
    except grpc.RpcError as err:
        code, reason, metadata = error_info(err)
        assert (code, reason, metadata) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "POLICY_DENIED",
            {"rule": "rpc"},
        )
        return True
    return False


def test_sighup_swaps_the_policy_and_refuses_an_invalid_one(
    start_ops_daemon: Callable[..., OpsDaemon],
) -> None:
    daemon = start_ops_daemon(watchdog_usec=None)
    directory = daemon.config.parent
    channel = daemon.channel()  # one connection for the whole test: it must survive
    stub = card_pb2_grpc.CardServiceStub(channel)
    assert not _denied(stub)

    # Valid: the kiosk role loses CardService.
    write_ops_config(directory, kiosk_allow='["hwgate.v1.PivService/*"]')
    _reload(daemon)
    assert _denied(stub)

    # Invalid (an unknown key), although its policy would give CardService back.
    config, _, _ = write_ops_config(directory, kiosk_allow=KIOSK_ALLOW, extra="[bogus]\nx = 1")
    _reload(daemon)
    assert _denied(stub), "an invalid config must leave the running policy in force"
    assert "reload rejected, keeping the running config" in daemon.log_text()

    # Valid, but the running kiosk listener's role vanishes from the policy: refused too.
    text = config.read_text().replace("[bogus]\nx = 1", "")
    config.write_text(text.replace('role = "kiosk"', 'role = "admin"', 1).replace(
        "[policy.roles.kiosk]", "[policy.roles.kiosk_gone]").replace(
        '"kiosk", "admin"', '"admin"'))  # fmt: skip
    _reload(daemon)
    assert _denied(stub)
    assert "of the running listener is not defined" in daemon.log_text()

    # Back to the original: allowed again, same connection, no restart.
    write_ops_config(directory)
    _reload(daemon)
    assert not _denied(stub)
    assert daemon.proc.poll() is None


def test_sighup_logs_what_needs_a_restart(start_ops_daemon: Callable[..., OpsDaemon]) -> None:
    daemon = start_ops_daemon(watchdog_usec=None)
    write_ops_config(daemon.config.parent, extra="[pcsc]\njournal_size = 7")
    _reload(daemon)
    assert "[pcsc] changed; it takes effect only after a restart" in daemon.log_text()
    with pytest.raises(AssertionError):  # and nothing was rejected
        assert "reload rejected" in daemon.log_text()
