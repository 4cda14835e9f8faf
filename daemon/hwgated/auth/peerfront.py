"""A relay in front of each Unix listener, so every local call knows the peer's uid.

grpcio's Python server exposes neither the accepted socket nor the peer's
credentials: ``context.peer()`` of a Unix-socket client is just ``"unix:"``.
Without them every local client is one identity (shared sessions, shared
limits). So the daemon accepts on the public socket itself, reads
``SO_PEERCRED`` (uid, gid, pid) from the accepted socket, and relays the bytes
to the real gRPC server, which listens on a private socket in a 0700 directory
only the daemon can enter. The relay connects from a socket bound to a unique
abstract address (``\\0hwgate-peer-<random>-<n>``); grpc core reports that
address as ``context.peer() == "unix-abstract:hwgate-peer-<random>-<n>"``,
which :class:`PeerTable` maps back to the credentials recorded at accept. The
entry goes when either side closes.

A connection that reaches the private socket any other way (only root can)
has no entry and is refused as unauthenticated: the design fails closed.

The relay is two ``asyncio.Protocol`` halves that write straight into each
other's transport; when one side's write buffer fills, the other side's
reading pauses (pause_reading/resume_reading), so a slow reader cannot make
the daemon buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from hwgated.auth import listeners
from hwgated.config import ListenerConfig

log = logging.getLogger(__name__)

ABSTRACT_PEER_PREFIX = "unix-abstract:"
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class PeerCred:
    """The kernel's word on who connected (SO_PEERCRED at connect time)."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return PeerCred(pid=pid, uid=uid, gid=gid)


class PeerTable:
    """Relay address → credentials of the client behind it, for the live connections."""

    def __init__(self) -> None:
        self._by_name: dict[str, PeerCred] = {}

    def add(self, name: str, cred: PeerCred) -> None:
        self._by_name[name] = cred

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)

    def lookup(self, peer: str) -> PeerCred | None:
        """The credentials for a ``context.peer()`` string, None if it did not come through us."""
        if not peer.startswith(ABSTRACT_PEER_PREFIX):
            return None
        return self._by_name.get(peer[len(ABSTRACT_PEER_PREFIX) :])

    def __len__(self) -> int:
        return len(self._by_name)


class _Half(asyncio.Protocol):
    """One side of a relayed connection; writes what it reads into the other side."""

    def __init__(self, on_made: Callable[[_Half], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None
        self.pending: list[bytes] = []  # read before the other side was connected
        self.eof = False
        self._on_made = on_made
        self._on_lost: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's implement asyncio.Transport without subclassing it).
        self.transport = cast(asyncio.Transport, transport)
        if self._on_made is not None:
            self.transport.pause_reading()  # nothing is read until the relay is linked
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            self.pending.append(data)
            return
        other.transport.write(data)

    def eof_received(self) -> bool:
        # HTTP/2 has no use for half-closed connections, and grpc core does not close
        # its end on a peer's EOF: a half-open relay would linger (and its peer-table
        # entry with it). So an EOF ends the whole relay; close() still flushes what
        # the other side has buffered.
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()
        if self._on_lost is not None and not self._on_lost.done():
            self._on_lost.set_result(None)

    # Flow control: our write buffer is full, so stop reading what fills it.
    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def join(self, other: _Half) -> None:
        """Link the halves and flush what arrived before the link."""
        self.other, other.other = other, self
        assert other.transport is not None
        for chunk in self.pending:
            other.transport.write(chunk)
        self.pending.clear()
        if self.eof:
            other.transport.close()


class PeerFront:
    """The public Unix socket of one listener, relaying to the gRPC server's private one."""

    def __init__(self, listener: ListenerConfig, table: PeerTable, private: Path) -> None:
        assert listener.unix is not None
        self.listener = listener
        self.public = listener.unix
        self.private = private
        self._table = table
        self._tag = secrets.token_hex(8)
        self._count = itertools.count()
        self._server: asyncio.AbstractServer | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.Transport] = set()

    async def bind(self) -> None:
        """Bind the public socket (mode/group as configured); nothing is accepted yet."""
        listeners.prepare_unix_path(self.public)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # never briefly world-accessible
        try:
            sock.bind(str(self.public))
        except OSError as exc:
            sock.close()
            raise listeners.ListenerError(f"cannot bind unix socket {self.public}: {exc}") from None
        finally:
            os.umask(old)
        listeners.apply_unix_permissions(self.listener)
        listeners.record_bound(self.public)
        sock.listen(128)
        self._server = await asyncio.get_running_loop().create_unix_server(
            self._accepted, sock=sock, start_serving=False
        )

    async def start(self) -> None:
        assert self._server is not None
        await self._server.start_serving()

    def _accepted(self) -> _Half:
        return _Half(on_made=self._start_relay)

    def _start_relay(self, client: _Half) -> None:
        task = asyncio.get_running_loop().create_task(self._relay(client))
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    async def _relay(self, client: _Half) -> None:
        transport = client.transport
        assert transport is not None
        self._transports.add(transport)
        name = f"hwgate-peer-{self._tag}-{next(self._count)}"
        try:
            sock = transport.get_extra_info("socket")
            cred = peer_credentials(sock)
            self._table.add(name, cred)
            upstream = await self._connect(name)
        except (OSError, asyncio.CancelledError) as exc:
            log.warning("%s: cannot relay a connection: %s", self.public, exc)
            self._table.remove(name)
            transport.close()
            self._transports.discard(transport)
            return
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        upstream._on_lost = lost
        client._on_lost = lost
        if transport.is_closing():
            upstream.transport.close()  # type: ignore[union-attr]
        else:
            client.join(upstream)
            upstream.join(client)
            transport.resume_reading()
        try:
            await lost
        finally:
            self._table.remove(name)
            self._transports.discard(transport)
            if upstream.transport is not None:
                upstream.transport.close()

    async def _connect(self, name: str) -> _Half:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(b"\0" + name.encode())
            sock.setblocking(False)
            await loop.sock_connect(sock, str(self.private))
            upstream = _Half()
            await loop.create_unix_connection(lambda: upstream, sock=sock)
        except BaseException:
            sock.close()
            raise
        return upstream

    async def close(self) -> None:
        """Stop accepting, end every relayed connection, remove the public socket."""
        if self._server is not None:
            self._server.close()
        for transport in list(self._transports):
            transport.close()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def stop_accepting(self) -> None:
        """No new connections; relayed ones go on (in-flight calls get the grace period)."""
        if self._server is not None:
            self._server.close()


def private_socket(public: Path) -> Path:
    """Where the gRPC server behind *public* listens: ``.NAME.d/s`` beside it, dir 0700.

    The name is fixed per listener, so a daemon that was killed leaves nothing
    behind that the next one does not reuse; a directory that is not ours, or
    not private, is refused rather than trusted. Only the daemon (and root) can
    reach the socket, so no connection bypasses the relay's credential check.
    """
    directory = public.parent / f".{public.name}.d"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    st = directory.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise listeners.ListenerError(f"{directory} is not a private directory of this user")
    path = directory / "s"
    if path.exists() or path.is_symlink():
        path.unlink()  # the public socket was stale (checked first), so this one is too
    return path


def remove_private_socket(public: Path) -> None:
    directory = public.parent / f".{public.name}.d"
    with contextlib.suppress(FileNotFoundError):
        (directory / "s").unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()
