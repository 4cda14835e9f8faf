"""What the daemon knows about the PIV application of one card insertion.

One :class:`PivState` lives in the connection's per-insertion state slot, so a
new card (or a new connection to the same card) starts from nothing and
nothing is read twice for one insertion.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from hwgated.piv.objects import Chuid, Discovery
from hwgated.piv.slots import Slot


class Unread(enum.Enum):
    """Marks a cached object not read yet (None means "read: the card has none")."""

    UNREAD = enum.auto()


UNREAD: Literal[Unread.UNREAD] = Unread.UNREAD


@dataclass
class PivState:
    """The PIV application of one insertion, as far as the daemon knows it."""

    # None until the first SELECT told whether the card has a PIV application.
    is_piv: bool | None = None
    # PIV is the selected application, as of ``exchanges_seen``.
    selected: bool = False
    # The connection's exchange count right after our last command: when it moved
    # since, someone else (a raw Transmit, a reset) used the card in between.
    exchanges_seen: int = -1
    # Our last command was a VERIFY and nothing was sent since: the state a
    # "PIN always" key (9C) needs.
    last_was_verify: bool = False
    chuid: Chuid | Literal[Unread.UNREAD] | None = UNREAD
    discovery: Discovery | Literal[Unread.UNREAD] | None = UNREAD
    # Slot → DER certificate, or None when the slot has none (or an unusable one).
    certificates: dict[Slot, bytes | None] = field(default_factory=dict)
    # Session ids whose VerifyPin succeeded with no failed VERIFY since. Session ids
    # are random and never reused, so a later session never inherits a record.
    pin_verified: set[str] = field(default_factory=set)
    # The connection's count of resets by other programs, as of our last look.
    outside_resets_seen: int = 0
    # Session ids whose verified PIN such a reset took away: their next PIN check
    # says why (PIN_REQUIRED naming the reset), not just "verify first".
    pin_lost: set[str] = field(default_factory=set)
