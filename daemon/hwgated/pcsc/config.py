"""The card subsystem's settings (the ``[pcsc]`` table).

It lives with the card layer, as :class:`hwgated.hsm.config.TokenConfig` lives
with the HSM layer, so the card layer depends on nothing above it; the config
loader (``hwgated.config``) builds it from the file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ShareMode(enum.Enum):
    """How the daemon connects to a card (``[pcsc] share_mode``).

    ``exclusive``: one exclusive PC/SC connection per insertion; no other program
    can use the card while the daemon runs. ``shared``: a shared connection, and
    every job and every session runs inside a PC/SC transaction, so other
    programs (OpenSC, vendor tools) use the card between them, never during.
    """

    EXCLUSIVE = "exclusive"
    SHARED = "shared"


@dataclass(frozen=True)
class PcscConfig:
    readers: tuple[str, ...] = ("*",)
    max_session_ttl: float = 30.0
    max_apdus_per_transmit: int = 64
    journal_size: int = 1024
    subscriber_queue: int = 256
    share_mode: ShareMode = ShareMode.EXCLUSIVE
