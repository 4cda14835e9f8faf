"""A PIN on its way from a request to the card: one mutable copy, wiped exactly once.

The PIN crosses threads: the servicer (asyncio loop) receives it, the reader
worker thread sends it. Whoever finishes last must wipe it, and a wipe must
never land *while* the worker is building the VERIFY command (a half-wiped PIN
would be sent and burn a retry). So the buffer has an owner: the worker
``claim``s it before use and wipes it after; the servicer ``abandon``s it when
the call ends, which wipes it only if the worker never claimed it (the job was
cancelled or never ran). The lock is held for a few instructions, never
across card I/O, so the event loop never waits on the card.
"""

from __future__ import annotations

import threading

from hwgated.piv.commands import PIN_MIN_LENGTH, PIN_PADDED_LENGTH, PinFormatError


class PinBuffer:
    """Holds a PIN in a bytearray; never exposes it in ``repr`` or ``str``."""

    __slots__ = ("_buf", "_claimed", "_lock", "_wiped")

    def __init__(self, pin: bytes | bytearray) -> None:
        self._buf = bytearray(pin)
        self._lock = threading.Lock()
        self._claimed = False
        self._wiped = False

    def __repr__(self) -> str:
        return "PinBuffer(<redacted>)"

    __str__ = __repr__

    def check_format(self) -> None:
        """PinFormatError unless the PIN is 6 to 8 ASCII digits (SP 800-73-4 part 2 §2.4.3)."""
        if not PIN_MIN_LENGTH <= len(self._buf) <= PIN_PADDED_LENGTH:
            raise PinFormatError(f"PIN must be {PIN_MIN_LENGTH} to {PIN_PADDED_LENGTH} digits")
        if not all(0x30 <= b <= 0x39 for b in self._buf):
            raise PinFormatError("PIN must contain only ASCII digits")

    def claim(self) -> bytearray | None:
        """Worker side: the PIN to use, or None if the call was already abandoned."""
        with self._lock:
            if self._wiped or self._claimed:
                return None
            self._claimed = True
            return self._buf

    def wipe(self) -> None:
        """Zero the PIN (idempotent); the claimant calls it when done."""
        with self._lock:
            self._zero()

    def abandon(self) -> None:
        """Servicer side, when the call ends: wipe unless a worker holds the PIN right now."""
        with self._lock:
            if not self._claimed:
                self._zero()

    @property
    def wiped(self) -> bool:
        return self._wiped

    def _zero(self) -> None:
        for i in range(len(self._buf)):
            self._buf[i] = 0
        self._wiped = True
