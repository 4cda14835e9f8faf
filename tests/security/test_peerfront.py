"""The SO_PEERCRED relay in front of Unix listeners: mapping, cleanup, big messages, sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hwgated.auth.listeners import ListenerError
from hwgated.auth.peerfront import PeerCred, PeerFront, PeerTable, private_socket
from hwgated.config import ListenerConfig
from support.daemon import TEST_POLICY, start_daemon

ECHO = "/test.Echo/Echo"
BIG = 4 << 20  # well past every socket and transport buffer: flow control must engage
OPTIONS = [("grpc.max_receive_message_length", 2 * BIG), ("grpc.max_send_message_length", 2 * BIG)]


def _echo_server(table: PeerTable, seen: list[PeerCred | None]) -> grpc.aio.Server:
    async def echo(request: bytes, context: Any) -> bytes:
        seen.append(table.lookup(context.peer()))
        return request

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server(options=OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    return server


async def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _run(
    tmp_path: Path, body: Callable[[Path, Path, PeerTable, list[Any]], Awaitable[None]]
) -> None:
    async def main() -> None:
        table, seen = PeerTable(), []
        private, public = tmp_path / "private.sock", tmp_path / "public.sock"
        server = _echo_server(table, seen)
        server.add_insecure_port(f"unix:{private}")
        front = PeerFront(ListenerConfig(unix=public, role="kiosk", mode=0o600), table, private)
        await front.bind()
        await server.start()
        await front.start()
        try:
            await body(public, private, table, seen)
        finally:
            await front.close()
            await server.stop(0)

    asyncio.run(main())


def _call(channel: grpc.aio.Channel) -> Callable[..., Awaitable[bytes]]:
    return channel.unary_unary(ECHO)  # type: ignore[no-any-return]


def test_calls_through_the_front_carry_the_peers_credentials(tmp_path: Path) -> None:
    me = PeerCred(pid=os.getpid(), uid=os.getuid(), gid=os.getgid())

    async def body(public: Path, private: Path, table: PeerTable, seen: list[Any]) -> None:
        async with grpc.aio.insecure_channel(f"unix:{public}", options=OPTIONS) as channel:
            assert await _call(channel)(b"one") == b"one"
            assert await _call(channel)(b"two") == b"two"
            assert len(table) == 1  # one connection, one entry
        await _until(lambda: len(table) == 0, "the closed connection's entry to go")
        # Straight to the private socket (only root could): no credentials, fail closed.
        async with grpc.aio.insecure_channel(f"unix:{private}") as channel:
            await _call(channel)(b"three")
        assert seen == [me, me, None]

    _run(tmp_path, body)


def test_big_messages_cross_the_relay_intact(tmp_path: Path) -> None:
    payload = os.urandom(BIG)

    async def body(public: Path, private: Path, table: PeerTable, seen: list[Any]) -> None:
        async with grpc.aio.insecure_channel(f"unix:{public}", options=OPTIONS) as channel:
            replies = await asyncio.gather(*(_call(channel)(payload) for _ in range(3)))
        assert all(reply == payload for reply in replies)

    _run(tmp_path, body)


def test_the_public_socket_gets_the_configured_mode(tmp_path: Path) -> None:
    async def body(public: Path, private: Path, table: PeerTable, seen: list[Any]) -> None:
        assert public.is_socket() and (public.stat().st_mode & 0o777) == 0o600

    _run(tmp_path, body)


def _config(directory: Path, sock: Path) -> Path:
    config = directory / "hwgated.toml"
    config.write_text(
        f'[daemon]\ngrace_period = 1\n[[listen]]\nunix = "{sock}"\nrole = "kiosk"\n' + TEST_POLICY
    )
    return config


def _health(sock: Path) -> int:
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


def test_private_socket_survives_kill_and_refuses_a_second_daemon(tmp_path: Path) -> None:
    sock = tmp_path / "hwgate.sock"
    private_dir = tmp_path / ".hwgate.sock.d"
    killed = start_daemon(_config(tmp_path, sock), sock, tmp_path / "killed.log")
    assert (private_dir.stat().st_mode & 0o777) == 0o700
    killed.stop(signal.SIGKILL)  # leaves both sockets behind
    daemon = start_daemon(_config(tmp_path, sock), sock, tmp_path / "hwgated.log")
    try:
        second = tmp_path / "second"
        second.mkdir()
        refused = subprocess.run(
            [sys.executable, "-m", "hwgated", "--config", str(_config(second, sock))],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode == 2, refused.stderr
        assert _health(sock) == 1  # SERVING: the first daemon's relay and private socket intact
    finally:
        assert daemon.stop() == 0
    assert not sock.exists() and not private_dir.exists()


def test_a_private_directory_that_is_not_private_is_refused(tmp_path: Path) -> None:
    public = tmp_path / "hwgate.sock"
    (tmp_path / ".hwgate.sock.d").mkdir(mode=0o755)
    (tmp_path / ".hwgate.sock.d").chmod(0o755)
    try:
        private_socket(public)
    except ListenerError:
        return
    raise AssertionError("a 0755 private directory was trusted")


def test_a_peer_that_stops_reading_stalls_the_sender_not_the_daemons_memory(
    tmp_path: Path,
) -> None:
    """Flow control: the upstream never reads, so the relay must stop reading the client."""

    async def main() -> int:
        table = PeerTable()
        private, public = tmp_path / "private.sock", tmp_path / "public.sock"
        accepted: list[asyncio.StreamWriter] = []

        async def never_read(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)

        sink = await asyncio.start_unix_server(never_read, str(private))
        front = PeerFront(ListenerConfig(unix=public, role="kiosk", mode=0o600), table, private)
        await front.bind()
        await front.start()
        loop = asyncio.get_running_loop()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, str(public))
        chunk, sent, stalled_since = b"\0" * 65536, 0, None
        try:
            while sent < 256 << 20:  # far past any sane buffering
                try:
                    sent += client.send(chunk)
                    stalled_since = None
                except BlockingIOError:
                    now = loop.time()
                    stalled_since = stalled_since or now
                    if now - stalled_since > 1.0:
                        break
                    await asyncio.sleep(0.02)
        finally:
            client.close()
            await front.close()
            sink.close()
            for writer in accepted:
                writer.close()
        return sent

    sent = asyncio.run(main())
    assert sent < 32 << 20, f"the relay buffered {sent >> 20} MiB for a peer that never reads"
