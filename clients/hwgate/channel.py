"""Targets, credentials and the service config every hwgate channel uses.

One place decides how a client reaches hwgated, so the library, the async
library and the CLI cannot drift apart:

- target: ``unix:///path`` (or a bare ``/path``), ``host:port`` (resolved by
  DNS, every address used), or a comma-separated ``host:port,host:port`` list;
  default ``$HWGATE_ADDR``, else the local socket ``/run/hwgate/hwgate.sock``.
- TCP is TLS with a client certificate (mTLS) unless ``plaintext`` is asked
  for (hwgated only accepts that on loopback with ``insecure = true``).
- The service config selects ``round_robin`` with the standard health service
  (``healthCheckConfig``), so a stopped or sick gateway is skipped, and retries
  only idempotent reads on UNAVAILABLE. VerifyPin, Sign and the other calls
  with effects are never retried by the channel: a retry could spend a PIN try
  or sign twice.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_SOCKET = "/run/hwgate/hwgate.sock"
ENV_ADDR = "HWGATE_ADDR"

# Reads with no effect on a card, a PIN counter or a key: safe to send again.
IDEMPOTENT_READS: tuple[tuple[str, str], ...] = (
    ("hwgate.v1.CardService", "ListReaders"),
    ("hwgate.v1.PivService", "GetCardInfo"),
    ("hwgate.v1.HsmService", "ListKeys"),
    ("hwgate.v1.HsmService", "GetPublicKey"),
    ("grpc.health.v1.Health", "Check"),
)

# hwgated keeps grpc's server default of at most one ping per 5 minutes without
# data; pinging more often gets the connection closed (ENHANCE_YOUR_CALM).
DEFAULT_KEEPALIVE_MS = 300_000
KEEPALIVE_TIMEOUT_MS = 20_000
# After failed connects grpc waits 1 s, then 1.6x longer each time, up to 120 s,
# before it tries again, and a call waiting for the channel waits all of that: a
# kiosk whose hwgated was restarted, or a program started before it, stayed
# offline for tens of seconds after the daemon was back (the test stack's start-up
# was seen at 65-90 s). A local daemon is worth a connect attempt every 2 s.
MAX_RECONNECT_BACKOFF_MS = 2_000


def service_config(health_service: str | None = "") -> dict[str, Any]:
    """The gRPC service config: round_robin, health checking, retries for reads.

    *health_service* is the name checked with grpc.health.v1 on every backend
    ("" = the whole server; e.g. "hwgate.v1.HsmService" to skip gateways whose
    HSM is down); None turns client-side health checking off.
    """
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": s, "method": m} for s, m in IDEMPOTENT_READS],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
    if health_service is not None:
        config["healthCheckConfig"] = {"serviceName": health_service}
    return config


@dataclass(frozen=True)
class Target:
    """A resolved target: the gRPC target string and whether it is TCP."""

    uri: str
    tcp: bool
    # Host name to check the server certificate against (TCP only).
    host: str = ""


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad address {address!r}: expected host:port")
    return host.strip("[]"), int(port)


def _resolve(host: str, port: int) -> list[str]:
    """IP literals for host (the address list form needs addresses, not names)."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return sorted({str(info[4][0]) for info in infos})


def _address_list(addresses: list[str]) -> Target:
    """``ipv4:a:p,b:p`` / ``ipv6:[a]:p,...``: every listed gateway, round_robin over them."""
    resolved: list[tuple[str, int]] = []
    for address in addresses:
        host, port = _split_host_port(address)
        resolved += [(ip, port) for ip in _resolve(host, port)]
    # One target holds one address family; with both, IPv4 wins (e.g. localhost).
    v4 = [(ip, p) for ip, p in resolved if ipaddress.ip_address(ip).version == 4]
    scheme = "ipv4" if v4 or not resolved else "ipv6"
    resolved = v4 or resolved
    body = ",".join(f"[{ip}]:{p}" if scheme == "ipv6" else f"{ip}:{p}" for ip, p in resolved)
    return Target(f"{scheme}:{body}", tcp=True, host=_split_host_port(addresses[0])[0])


def resolve_target(target: str | None = None) -> Target:
    """Turn a user-given target (or $HWGATE_ADDR, or the default socket) into a Target."""
    text = (target or os.environ.get(ENV_ADDR) or f"unix://{DEFAULT_SOCKET}").strip()
    if text.startswith(("unix:", "unix-abstract:")):
        return Target(text, tcp=False)
    if text.startswith("/"):
        return Target(f"unix://{text}", tcp=False)
    if "," in text:
        return _address_list([part.strip() for part in text.split(",") if part.strip()])
    if text.startswith(("dns:", "ipv4:", "ipv6:")):
        return Target(text, tcp=True, host=text.split(":")[-2].split("/")[-1].split(",")[0])
    host, _port = _split_host_port(text)
    return Target(f"dns:///{text}", tcp=True, host=host)


def _read(path: str | os.PathLike[str] | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


def credentials(
    cacert: str | os.PathLike[str] | None,
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
) -> grpc.ChannelCredentials:
    """TLS credentials; the client certificate and key go together (mTLS)."""
    if (cert is None) != (key is None):
        raise ValueError("give both a client certificate and its key, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(cacert), private_key=_read(key), certificate_chain=_read(cert)
    )


def channel_options(
    health_service: str | None = "",
    keepalive_ms: int = DEFAULT_KEEPALIVE_MS,
    server_name: str | None = None,
    max_message_bytes: int = 4 * 1024 * 1024,
) -> list[tuple[str, Any]]:
    """Channel arguments: the service config, keepalive, message size, reconnect
    backoff, TLS name."""
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config(health_service))),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


@dataclass(frozen=True)
class ChannelSpec:
    """Everything needed to open a channel, sync or asyncio."""

    target: Target
    credentials: grpc.ChannelCredentials | None
    options: list[tuple[str, Any]]


def channel_spec(
    target: str | None = None,
    *,
    cacert: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    plaintext: bool = False,
    server_name: str | None = None,
    health_service: str | None = "",
    keepalive_ms: int = DEFAULT_KEEPALIVE_MS,
) -> ChannelSpec:
    """Resolve the target and pick credentials: TLS for TCP unless *plaintext*."""
    resolved = resolve_target(target)
    creds = None
    if resolved.tcp and not plaintext:
        creds = credentials(cacert, cert, key)
        # A target list names addresses; check the certificate against the first host name.
        if server_name is None and resolved.uri.startswith(("ipv4:", "ipv6:")):
            server_name = resolved.host
    elif not resolved.tcp:
        server_name = None
    options = channel_options(health_service, keepalive_ms, server_name)
    return ChannelSpec(resolved, creds, options)


def open_channel(spec: ChannelSpec) -> grpc.Channel:
    """A blocking-API channel for *spec*."""
    if spec.credentials is None:
        return grpc.insecure_channel(spec.target.uri, options=spec.options)
    return grpc.secure_channel(spec.target.uri, spec.credentials, options=spec.options)


def open_aio_channel(spec: ChannelSpec) -> grpc.aio.Channel:
    """An asyncio channel for *spec*."""
    if spec.credentials is None:
        return grpc.aio.insecure_channel(spec.target.uri, options=spec.options)
    return grpc.aio.secure_channel(spec.target.uri, spec.credentials, options=spec.options)
