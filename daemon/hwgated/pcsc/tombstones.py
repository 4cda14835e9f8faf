"""Why a session ended, remembered for a while (bounded tombstones).

A client whose session vanished must be able to tell a pulled card from an
idle timeout without watching the event stream: a call on an ended session
gets CARD_REMOVED (ABORTED) after a removal, SESSION_EXPIRED after the TTL ran
out, and SESSION_NOT_FOUND after a close (as for an id never issued).
CloseSession is the exception: closing an ended session always answers
SESSION_NOT_FOUND (NOT_FOUND, as it always did, so cleanup code that treats
NOT_FOUND as "already gone" keeps working), with the end named in the
``ended`` metadata for the owner.

Only the session's owner learns the reason. Anyone else gets
SESSION_NOT_FOUND, exactly as for an unknown id: the reason would tell a
stranger when another identity's card was pulled or how long it sat idle,
and "not yours" would confirm that the id was real. (Session ids are 192-bit
random tokens, so this guards against ids leaked in logs or by a buggy
client, not against guessing.)

The memory is bounded twice: at most ``capacity`` tombstones (the oldest go
first) and each for ``lifetime`` seconds. Past either, an ended session is
simply unknown again (SESSION_NOT_FOUND), which is still a true answer.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from hwgated import errors

DEFAULT_CAPACITY = 1024
DEFAULT_LIFETIME = 600.0  # seconds


class EndReason(enum.Enum):
    """How a session ended."""

    CLOSED = "closed"  # CloseSession, or the caller never received it
    EXPIRED = "expired"  # the idle TTL ran out
    CARD_REMOVED = "card removed"
    READER_REMOVED = "reader removed"
    PCSC_DOWN = "pcscd went away"  # every card handle is lost (the card is reset)
    SHUTDOWN = "daemon shutdown"


@dataclass(frozen=True)
class Tombstone:
    """What is kept of an ended session: no PIN status, no card data."""

    owner: str
    reader: str
    why: EndReason
    ttl: float
    ended_at: float  # monotonic

    def close_error(self) -> errors.HwgateError:
        """What CloseSession answers its owner: gone, and why (see the module doc)."""
        return errors.SessionNotFound(
            f"the session had already ended: {self.why.value}",
            ended=self.why.name.lower(),
            reader=self.reader,
        )

    def error(self) -> errors.HwgateError:
        """The error a call on this session gets now (for its owner)."""
        if self.why is EndReason.EXPIRED:
            return errors.SessionExpired(
                f"the session expired after {self.ttl:g} s without a call",
                reader=self.reader,
            )
        if self.why in (EndReason.CARD_REMOVED, EndReason.READER_REMOVED, EndReason.PCSC_DOWN):
            return errors.CardRemoved(
                f"the session ended: {self.why.value} (the card's state is gone)",
                reader=self.reader,
            )
        return errors.SessionNotFound("no such session (closed, expired or never opened)")


class Tombstones:
    """session id → :class:`Tombstone`, bounded by count and age (see the module doc)."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.lifetime = lifetime
        self._clock = clock
        self._items: OrderedDict[str, Tombstone] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def bury(self, session_id: str, owner: str, reader: str, why: EndReason, ttl: float) -> None:
        """Remember why *session_id* ended. A close or shutdown is not remembered:
        its answer is SESSION_NOT_FOUND anyway."""
        if why in (EndReason.CLOSED, EndReason.SHUTDOWN) or self.capacity <= 0:
            return
        self._prune()
        self._items[session_id] = Tombstone(owner, reader, why, ttl, self._clock())
        self._items.move_to_end(session_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def error_for(
        self, session_id: str, owner: str, *, closing: bool = False
    ) -> errors.HwgateError:
        """The error for a call (*closing*: CloseSession) on a session that is not
        live (see the module doc)."""
        self._prune()
        stone = self._items.get(session_id)
        if stone is None or stone.owner != owner:
            return errors.SessionNotFound("no such session (closed, expired or never opened)")
        return stone.close_error() if closing else stone.error()

    def _prune(self) -> None:
        """Drop tombstones past their lifetime (they are in burial order)."""
        horizon = self._clock() - self.lifetime
        while self._items:
            oldest = next(iter(self._items.values()))
            if oldest.ended_at > horizon:
                break
            self._items.popitem(last=False)
