"""The PIN-try limit: per caller *and* per card, shared by every listener and RPC.

Each wrong PIN burns one of the card's few retries. A limit per caller alone
lets N identities make N times the tries against one card (and before peer
credentials, every local client shared one bucket). So each try takes a token
from the caller's bucket and from the card's bucket, or from neither.

The card is named by what the daemon read at insertion: the CHUID's GUID, else
its FASC-N, else the reader (a card with no readable identity shares the
reader's budget: stricter, never looser). A GUID or FASC-N outlives a
re-insertion, so pulling the card does not refill its budget.

PivService.VerifyPin and a permitted raw VERIFY through CardService.Transmit
use the same instance (made once by the daemon), so neither is a side door.
"""

from __future__ import annotations

from hwgated.auth.ratelimit import Clock, TokenBucketLimiter
from hwgated.pcsc.manager import CardManager
from hwgated.pivapp.identity import CardIdentity


def card_key(identity: CardIdentity | None, reader: str) -> str:
    """The card's limiter key (see the module docstring)."""
    if identity is not None:
        if identity.guid is not None and identity.guid.int != 0:
            return f"card:guid:{identity.guid}"
        if identity.fascn_raw:
            return f"card:fascn:{identity.fascn_raw.hex()}"
    return f"card:reader:{reader}"


class PinLimits:
    """``per_minute`` PIN tries per caller and per card (``<= 0``: unlimited)."""

    def __init__(self, per_minute: int, *, clock: Clock | None = None) -> None:
        if clock is None:
            self._limiter = TokenBucketLimiter(per_minute)
        else:
            self._limiter = TokenBucketLimiter(per_minute, clock=clock)

    @property
    def per_minute(self) -> int:
        return self._limiter.per_minute

    def acquire(self, owner: str, card: str, action: str = "VerifyPin") -> None:
        """One try for caller *owner* on card *card*; RateLimited when either is spent."""
        self._limiter.acquire_all((f"caller:{owner}", card), action)

    async def acquire_on(
        self,
        manager: CardManager,
        owner: str,
        reader: str,
        action: str,
        timeout: float | None = None,
    ) -> None:
        """:meth:`acquire` for the card now in *reader*.

        A card just inserted is still being identified; its key is taken once that
        is done, or a try made in the first moments would count against the reader
        instead of the card and escape the card's budget.
        """
        slots = await manager.settled_readers(timeout)
        identity = next((s.identity for s in slots if s.name == reader), None)
        self.acquire(owner, card_key(identity, reader), action)
