"""The card side of vpcd's socket protocol: connect to the reader, answer it.

vpcd (the pcscd reader driver from vsmartcard) listens; the card connects.
Every message is a 2-byte big-endian length and a payload. A 1-byte payload is
a control code (0 power off, 1 power on, 2 reset, 4 get ATR, answered with the
ATR); anything longer is a command APDU, answered with the response APDU.

``TCP_NODELAY`` and re-arming ``TCP_QUICKACK`` after every receive are what make
an APDU take ~0.1 ms instead of ~44 ms (Nagle against delayed ACK).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

CTRL_POWER_OFF = 0
CTRL_POWER_ON = 1
CTRL_RESET = 2
CTRL_GET_ATR = 4

_POLL_INTERVAL = 0.1  # how often a blocked reader looks at the stop event
_SECRET_INS = frozenset({0x20, 0x24, 0x2C})  # VERIFY, CHANGE REFERENCE, RESET RETRY


class Card(Protocol):
    """What vpcd drives: the PivApplet satisfies this."""

    def process(self, apdu: bytes) -> bytes: ...
    def power_on(self) -> None: ...
    def power_off(self) -> None: ...
    def reset(self) -> None: ...


class _Closed(Exception):
    """The reader closed the connection, or we were asked to stop."""


def connect(
    host: str, port: int, stop: threading.Event, timeout: float = 10.0
) -> socket.socket | None:
    """Connect to vpcd, retrying refused connections with backoff until *timeout*.

    Returns None if the deadline passes or *stop* is set first.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=max(0.1, timeout))
        except (ConnectionRefusedError, TimeoutError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                log.warning("vpcd at %s:%d not reachable: %s", host, port, exc)
                return None
            stop.wait(delay)
            delay = min(delay * 2, 0.5)
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quickack(sock)
        return sock
    return None


def serve(sock: socket.socket, card: Card, atr: bytes, stop: threading.Event) -> None:
    """Answer vpcd on *sock* until the peer closes or *stop* is set; closes *sock*."""
    try:
        # Checked per message too: under constant APDU traffic the socket is never
        # idle, so the check in _read_exact alone would never see a removal.
        while not stop.is_set():
            payload = _read_message(sock, stop)
            reply = _handle(payload, card, atr)
            if reply is not None:
                sock.sendall(len(reply).to_bytes(2, "big") + reply)
    except _Closed:
        pass
    except OSError as exc:  # reset by peer etc.: the card has been "removed"
        log.info("vpcd connection lost: %s", exc)
    finally:
        card.power_off()
        sock.close()


def run_card(
    card: Card,
    atr: bytes,
    stop: threading.Event,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    connect_timeout: float = 10.0,
) -> bool:
    """Connect and serve one session. Returns False if vpcd could not be reached."""
    sock = connect(host, port, stop, connect_timeout)
    if sock is None:
        return False
    log.info("card connected to vpcd at %s:%d", host, port)
    serve(sock, card, atr, stop)
    return True


def _handle(payload: bytes, card: Card, atr: bytes) -> bytes | None:
    if len(payload) == 1:
        code = payload[0]
        if code == CTRL_GET_ATR:
            return atr
        if code == CTRL_POWER_ON:
            card.power_on()
        elif code == CTRL_POWER_OFF:
            card.power_off()
        elif code == CTRL_RESET:
            card.reset()
        else:
            log.warning("unknown vpcd control code %d", code)
        return None
    response = card.process(payload)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("C-APDU %s", redact(payload).hex(" "))
        log.debug("R-APDU %s", response.hex(" "))
    return response


def redact(apdu: bytes) -> bytes:
    """*apdu* with the data of PIN-carrying commands replaced by XX..., for logs."""
    if len(apdu) > 5 and apdu[1] in _SECRET_INS:
        return apdu[:5] + b"\xaa" * (len(apdu) - 5)
    return apdu


def _read_message(sock: socket.socket, stop: threading.Event) -> bytes:
    length = int.from_bytes(_read_exact(sock, 2, stop), "big")
    return _read_exact(sock, length, stop)


def _read_exact(sock: socket.socket, count: int, stop: threading.Event) -> bytes:
    buf = bytearray()
    while len(buf) < count:
        while not select.select([sock], [], [], _POLL_INTERVAL)[0]:
            if stop.is_set():
                raise _Closed
        chunk = sock.recv(count - len(buf))
        if not chunk:
            raise _Closed
        _quickack(sock)
        buf += chunk
    return bytes(buf)


def _quickack(sock: socket.socket) -> None:
    """Linux turns quick-ack off again after use, so this is re-armed on every recv."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
