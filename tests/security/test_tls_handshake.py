"""Issue 14, finding 9: TCP connections that never finish the TLS handshake stayed open.

The probe held 8000 such sockets on the mTLS port. ``[limits] handshake_timeout``
(grpc.server_handshake_timeout_ms) now closes a connection that has not finished
its TLS handshake and sent the HTTP/2 preface in time, on TLS and plain
listeners alike, and ``max_connections_per_listener``
(grpc.max_allowed_incoming_connections) closes connections beyond the cap at once.
This module's daemon sets both small.
"""

from __future__ import annotations

import select
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import Pki, SecurityDaemon, start_security_daemon

HANDSHAKE_TIMEOUT = 2.0
CAP = 6
LIMITS = f"handshake_timeout = {HANDSHAKE_TIMEOUT}\nmax_connections_per_listener = {CAP}"
# Generous "did not hang" bound: grpc core's default deadline was 120 s.
CLOSED_WITHIN = HANDSHAKE_TIMEOUT + 8

# The first bytes of a TLS 1.2 ClientHello record: header, then a handshake header
# announcing far more bytes than are ever sent.
HALF_CLIENT_HELLO = bytes.fromhex("160301020001" + "0001fc0303") + bytes(16)


@pytest.fixture(scope="module")
def hsd(
    testbed: Any, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecurityDaemon]:
    daemon = start_security_daemon(tmp_path_factory.mktemp("hsd"), testbed, pki, limits=LIMITS)
    yield daemon
    daemon.proc.stop(signal.SIGTERM)


def is_closed(sock: socket.socket) -> bool:
    """True once the server closed *sock* (EOF or reset); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def wait_closed(sock: socket.socket, within: float) -> float:
    """Seconds until the server closed *sock*; fails after *within* seconds."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable and is_closed(sock):
            return time.monotonic() - start
    raise AssertionError(f"the server kept an idle connection open for {within} s")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def health_ok(daemon: SecurityDaemon) -> bool:
    with daemon.tls_channel("kiosk") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize("sends", [b"", HALF_CLIENT_HELLO], ids=["nothing", "half-hello"])
def test_stalled_tls_handshake_is_closed(hsd: SecurityDaemon, sends: bytes) -> None:
    with connect(hsd.tls_port) as sock:
        sock.sendall(sends)
        wait_closed(sock, CLOSED_WITHIN)
    assert health_ok(hsd)


def test_silent_plain_connection_is_closed(hsd: SecurityDaemon) -> None:
    """The deadline also covers the HTTP/2 preface on an insecure listener."""
    with connect(hsd.plain_port) as sock:
        wait_closed(sock, CLOSED_WITHIN)


def test_connections_beyond_the_cap_are_closed_at_once(hsd: SecurityDaemon) -> None:
    with ExitStack() as stack:
        held = [stack.enter_context(connect(hsd.tls_port)) for _ in range(CAP)]
        extra = stack.enter_context(connect(hsd.tls_port))
        # The one over the cap goes while the ones under it still wait for their deadline.
        wait_closed(extra, CLOSED_WITHIN)
        assert not any(is_closed(sock) for sock in held)
        for sock in held:
            wait_closed(sock, CLOSED_WITHIN)
    # Once the idle ones are gone, real clients get in again.
    assert health_ok(hsd)
