"""Framing on the parent <-> worker socket: 4-byte big-endian length, then the payload.

Payloads are pickles of tuples built only by this package (both ends are ours,
so pickle is safe here and costs a few microseconds). The worker side is
blocking; the parent side feeds bytes from an asyncio protocol into
``FrameDecoder``, so a stalled worker can never block the event loop.

Requests: ``(request_id, op, args)``. Replies: ``(request_id, True, result)`` or
``(request_id, False, (reason, message))``. Request id 0 is the worker's start-up
report. The PIN travels as one raw frame right after the init frame.
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")
MAX_FRAME = 64 << 20

STARTUP_ID = 0


def encode(message: Any) -> bytes:
    """One frame holding ``message`` pickled."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def raw_frame(payload: bytes | bytearray) -> bytearray:
    """One frame around raw bytes, as a bytearray the caller can wipe after sending."""
    frame = bytearray(_HEADER.pack(len(payload)))
    frame += payload
    return frame


class FrameDecoder:
    """Incremental decoder: feed any chunk, get the complete messages so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out: list[Any] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > MAX_FRAME:
                raise ValueError("oversized frame from worker")
            end = pos + _HEADER.size + length
            if len(buf) < end:
                break
            out.append(pickle.loads(memoryview(buf)[pos + _HEADER.size : end]))
            pos = end
        if pos:
            del buf[:pos]
        return out


def send_message(sock: socket.socket, message: Any) -> None:
    """Blocking send of one pickled message (worker side)."""
    sock.sendall(encode(message))


def recv_frame(sock: socket.socket) -> bytearray | None:
    """Blocking read of one frame's payload; None on a clean EOF (parent gone)."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError("oversized frame from parent")
    body = _recv_exact(sock, length)
    if body is None:
        return None
    return body


def recv_message(sock: socket.socket) -> Any:
    """Blocking read of one pickled message; None on EOF."""
    body = recv_frame(sock)
    return None if body is None else pickle.loads(body)


def _recv_exact(sock: socket.socket, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return buf
