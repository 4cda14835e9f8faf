"""The card subsystem's settings (the ``[pcsc]`` table).

It lives with the card layer, as :class:`hwgated.hsm.config.TokenConfig` lives
with the HSM layer, so the card layer depends on nothing above it; the config
loader (``hwgated.config``) builds it from the file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PcscConfig:
    readers: tuple[str, ...] = ("*",)
    max_session_ttl: float = 30.0
    max_apdus_per_transmit: int = 64
    journal_size: int = 1024
    subscriber_queue: int = 256
