"""What a worker's PKCS#11 module prints, logged by the daemon under the token's name.

Vendor modules write to stderr (and some to stdout): warnings, debug traces
(OpenSC's pkcs11-spy logs every call there), crash notes. Inherited as they
were, those lines reached the journal as the interpreter's own output, with no
hint which token or worker wrote them. Each worker's fds 1 and 2 are instead the
write end of a socket pair whose other end the daemon reads on its event loop:
every line becomes a ``hwgated.hsm.module`` record with the token name (journal
field ``HWGATE_TOKEN``) and the worker's pid, so ``journalctl -u hwgated
HWGATE_TOKEN=issuing`` shows one token's module chatter.

Modules that use syslog(3) instead (SoftHSM does) cannot be redirected; the
worker opens syslog as ``hwgated-hsm-<token>`` before loading the module, so
those lines carry that identifier instead of the interpreter's ``python3``.

hwgated cannot tell a module's secrets from its chatter: a debugging module
that prints the PIN (OpenSC's pkcs11-spy traces C_Login's arguments) puts it in
the log, as it did before this relay. Such modules are for test tokens only.

Nothing of this runs on the request path: a quiet module costs one idle socket
per worker. A chatty one is capped (``LINES_PER_WINDOW`` per ``WINDOW``
seconds, then a count of what was dropped) so a module tracing every call
cannot flood the journal or stall the loop; an over-long line is cut.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

log = logging.getLogger("hwgated.hsm.module")

LINES_PER_WINDOW = 200
WINDOW = 1.0  # seconds
MAX_LINE_CHARS = 1000
_MAX_BUFFER = 64 * 1024  # a "line" longer than this is flushed in pieces
_IDENT_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def syslog_ident(token: str) -> str:
    """The syslog(3) identifier of *token*'s workers: ``hwgated-hsm-<token>``."""
    return "hwgated-hsm-" + _IDENT_UNSAFE.sub("_", token)


class WorkerOutput(asyncio.Protocol):
    """Reads one worker's stdout/stderr and logs it line by line, rate-capped."""

    def __init__(self, token: str, worker: str) -> None:
        self.token = token
        self.worker = worker  # "issuing/0": token and slot
        self.pid: int | None = None
        self.dropped = 0
        self._buffer = b""
        self._window_start = 0.0
        self._in_window = 0
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > _MAX_BUFFER:
            lines.append(self._buffer)
            self._buffer = b""
        for line in lines:
            self._emit(line)

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = b""
        self._report_dropped()
        self._transport = None

    def close(self) -> None:
        """Stop reading (a stray child of the module may hold the socket open)."""
        if self._transport is not None:
            self._transport.close()

    def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if not text.strip():
            return
        now = time.monotonic()
        if now - self._window_start >= WINDOW:
            self._report_dropped()
            self._window_start, self._in_window = now, 0
        if self._in_window >= LINES_PER_WINDOW:
            self.dropped += 1
            return
        self._in_window += 1
        if len(text) > MAX_LINE_CHARS:
            text = text[: MAX_LINE_CHARS - 1] + "…"
        log.warning(
            "hsm %s worker %s (pid %s): %s",
            self.token,
            self.worker.rpartition("/")[2],
            self.pid,
            text,
            extra={"hwgate_token": self.token},
        )

    def _report_dropped(self) -> None:
        if self.dropped:
            log.warning(
                "hsm %s worker %s (pid %s): %d more lines of module output dropped "
                "(over %d lines/s)",
                self.token,
                self.worker.rpartition("/")[2],
                self.pid,
                self.dropped,
                LINES_PER_WINDOW,
                extra={"hwgate_token": self.token},
            )
            self.dropped = 0
