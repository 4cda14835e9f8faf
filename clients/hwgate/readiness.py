"""Is a channel connected? Asked with one RPC, never with a connectivity subscription.

``grpc.channel_ready_future`` and ``Channel.subscribe`` start grpc's
``_poll_connectivity`` thread, which keeps polling the channel for up to 0.2 s
after the last subscriber left. A program that closes its channel right after
connecting (every CLI command) races that thread, which then dies printing
``ValueError: Cannot invoke RPC: Channel closed!`` on stderr. An RPC has no such
thread: ``grpc.health.v1.Health/Check`` is sent as raw bytes (an empty request),
and any answer from a server, even UNIMPLEMENTED from one without the health
service or PERMISSION_DENIED, proves the connection works.
"""

from __future__ import annotations

import enum

import grpc

HEALTH_CHECK = "/grpc.health.v1.Health/Check"

# Codes a call gets from the channel itself when no connection could be used.
_NOT_CONNECTED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Probe(enum.Enum):
    """What one readiness probe found."""

    READY = "ready"  # a server answered
    FAILED = "failed"  # a connection attempt failed (fail-fast probe only)
    TIMEOUT = "timeout"  # no connection within the time given


def probe(channel: grpc.Channel, timeout: float, *, wait_for_ready: bool) -> Probe:
    """Send one Health/Check on *channel*.

    ``wait_for_ready=False`` returns FAILED as soon as a connection attempt failed
    (the moment to look at what listens there); ``True`` keeps waiting through
    failed attempts until *timeout*.
    """
    # bytes in, bytes out: no stubs needed
    check = channel.unary_unary(HEALTH_CHECK, request_serializer=None, response_deserializer=None)
    try:
        check(b"", timeout=max(timeout, 0.001), wait_for_ready=wait_for_ready)
    except grpc.RpcError as err:
        code = err.code()  # type: ignore[attr-defined]
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return Probe.TIMEOUT
        if code is grpc.StatusCode.UNAVAILABLE and not _from_server(err):
            return Probe.TIMEOUT if wait_for_ready else Probe.FAILED
    return Probe.READY


def _from_server(err: grpc.RpcError) -> bool:
    """An UNAVAILABLE a server sent (hwgated shutting down) carries trailing metadata;
    one the channel made up for a failed connection carries none."""
    trailing = err.trailing_metadata()  # type: ignore[attr-defined]
    return bool(trailing)


def wait_ready(channel: grpc.Channel, timeout: float) -> bool:
    """Block until *channel* reaches a server or *timeout* passes; True when connected."""
    return probe(channel, timeout, wait_for_ready=True) is Probe.READY
