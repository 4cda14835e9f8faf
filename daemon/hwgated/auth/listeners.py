"""Binding the daemon's sockets: Unix sockets with mode/group, TCP with mutual TLS.

grpcio binds when a port is added, so permissions are applied right after
binding, before the server starts accepting. A stale socket file (no daemon
answers on it) is replaced; a live one means another hwgated is running, which
is an error rather than a silent takeover.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
from pathlib import Path

import grpc

from hwgated.config import ConfigError, LimitsConfig, ListenerConfig
from hwgated.filemodes import UnsafeFile, check_socket_dir, check_socket_mode

log = logging.getLogger(__name__)


class ListenerError(Exception):
    """A listener could not be bound."""


# Socket files this process bound, with their (device, inode). Only these are
# removed at shutdown: a daemon that failed to start (say, because another
# hwgated owns the socket) must not unlink the other daemon's live socket or a
# file that merely sits at the configured path.
_bound: dict[Path, tuple[int, int]] = {}


def prepare_unix_path(path: Path) -> None:
    """Make the socket's directory (0750) or check an existing one; clear a stale socket."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o750)
    else:
        try:
            check_socket_dir(path.parent)
        except UnsafeFile as exc:
            raise ListenerError(str(exc)) from None
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise ListenerError(f"{path} exists and is not a socket; refusing to replace it")
    if _socket_answers(path):
        raise ListenerError(f"{path} is in use by a running process (another hwgated?)")
    log.info("removing stale socket %s", path)
    path.unlink()


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def apply_unix_permissions(listener: ListenerConfig) -> None:
    """chmod/chgrp the bound socket file as configured."""
    assert listener.unix is not None
    if listener.group is not None:
        gid = grp.getgrnam(listener.group).gr_gid
        os.chown(listener.unix, -1, gid)
    os.chmod(listener.unix, listener.mode)


def record_bound(path: Path) -> None:
    """Remember *path* as a socket this process bound (removed by remove_unix_sockets)."""
    st = path.lstat()
    _bound[path] = (st.st_dev, st.st_ino)


def server_credentials(listener: ListenerConfig) -> grpc.ServerCredentials:
    """TLS 1.2+ server credentials that require a client certificate from client_ca."""
    assert listener.tls_cert and listener.tls_key and listener.client_ca
    try:
        cert = listener.tls_cert.read_bytes()
        key = listener.tls_key.read_bytes()
        ca = listener.client_ca.read_bytes()
    except OSError as exc:
        raise ConfigError(f"listener {listener.tcp}: {exc}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def connection_options(limits: LimitsConfig) -> list[tuple[str, int]]:
    """gRPC server options bounding connections that never finish their handshake.

    ``grpc.server_handshake_timeout_ms`` covers the TLS handshake and the client's
    HTTP/2 preface (insecure listeners too); ``grpc.max_allowed_incoming_connections``
    is counted per server, and the daemon runs one server per listener.
    """
    return [
        ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout * 1000)),
        ("grpc.max_allowed_incoming_connections", limits.max_connections_per_listener),
    ]


def bind(server: grpc.aio.Server, listener: ListenerConfig) -> str:
    """Add *listener* to *server*; returns the bound address for the log."""
    if listener.unix is not None:
        prepare_unix_path(listener.unix)
        # Bind with a tight umask so the socket is never briefly world-accessible.
        old = os.umask(0o177)
        try:
            port = server.add_insecure_port(f"unix:{listener.unix}")
        finally:
            os.umask(old)
        if port == 0 and not listener.unix.exists():
            raise ListenerError(f"cannot bind unix socket {listener.unix}")
        apply_unix_permissions(listener)
        st = listener.unix.lstat()
        _bound[listener.unix] = (st.st_dev, st.st_ino)
        try:
            check_socket_mode(listener.unix, listener.mode, listener.role)
        except UnsafeFile as exc:
            raise ListenerError(str(exc)) from None
        return f"unix:{listener.unix}"
    assert listener.tcp is not None
    if listener.insecure:
        port = server.add_insecure_port(listener.tcp)
    else:
        port = server.add_secure_port(listener.tcp, server_credentials(listener))
    if port == 0:
        raise ListenerError(f"cannot bind {listener.tcp}")
    return listener.tcp


def remove_unix_sockets(listeners: tuple[ListenerConfig, ...]) -> None:
    """Remove the socket files of *listeners* that this process bound, and nothing else."""
    for listener in listeners:
        if listener.unix is None or listener.unix not in _bound:
            continue
        ident = _bound.pop(listener.unix)
        with contextlib.suppress(FileNotFoundError):
            st = listener.unix.lstat()
            if (st.st_dev, st.st_ino) == ident:
                listener.unix.unlink()
            else:
                log.warning("%s was replaced by another file; leaving it", listener.unix)
