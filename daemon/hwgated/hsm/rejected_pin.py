"""Memory of the one PIN the token rejected, so the pool never offers it again.

Each wrong PIN costs a try of the token's retry counter, and a pool that
retried it on every backoff step would lock the token. The pool instead waits
until the PIN source holds a different PIN. Only a keyed digest is kept (the
key is random per pool and never leaves this process), never the PIN.
"""

from __future__ import annotations

import hashlib
import hmac
import os


class RejectedPin:
    """Remembers the digest of the last PIN the token refused."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._rejected: bytes | None = None

    def digest(self, pin: bytes | bytearray) -> bytes:
        """The keyed digest that stands for ``pin`` in ``reject``/``is_rejected``."""
        return hmac.new(self._key, pin, hashlib.sha256).digest()

    def is_rejected(self, digest: bytes) -> bool:
        rejected = self._rejected
        return rejected is not None and hmac.compare_digest(digest, rejected)

    def reject(self, digest: bytes) -> None:
        """The token refused this PIN (login failed)."""
        self._rejected = digest

    def forget(self) -> None:
        """A login succeeded: no PIN is known to be wrong."""
        self._rejected = None
