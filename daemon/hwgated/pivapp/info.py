"""GetCardInfo's card job: what a PIV card says of itself.

Objects come from the per-insertion cache (read at most once per insertion).
The PIN status needs an empty VERIFY, which is itself a card command: sent
between a VerifyPin and a 9C signature it would void "PIN always". So when the
session's previous card command was its successful VERIFY, this job sends no
APDU at all and answers from the cache and the session's PIN record (verified,
no retry count, as the card itself would report). VerifyPin fills the cache
before its VERIFY, so nothing is left to read at that point.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgated.pcsc.connection import Connection
from hwgated.piv.objects import Chuid, Discovery
from hwgated.piv.slots import Slot
from hwgated.pivapp.app import PivApp
from hwgated.pivapp.cache import (
    CERTIFICATE_SLOTS,
    cached_certificate,
    cached_chuid,
    cached_discovery,
)
from hwgated.pivapp.pin import pin_always_armed, pin_reference


@dataclass(frozen=True)
class CardInfo:
    reader: str
    atr: bytes
    chuid: Chuid | None
    certificates: tuple[tuple[Slot, bytes], ...]
    pin_retries_left: int | None  # None: verified (the card reports no count then)
    pin_verified: bool
    discovery: Discovery | None


def read_card_info(connection: Connection, session_id: str | None) -> CardInfo:
    """The card's CHUID, certificates, Discovery and PIN status (see the module doc)."""
    app = PivApp(connection)
    app.require_piv()
    armed = session_id is not None and pin_always_armed(app, session_id)
    chuid = cached_chuid(app)
    discovery = cached_discovery(app)
    certificates = tuple(
        (slot, cert) for slot in CERTIFICATE_SLOTS if (cert := cached_certificate(app, slot))
    )
    retries = None if armed else app.card().pin_retries(pin_reference(app))
    return CardInfo(
        reader=app.reader,
        atr=connection.atr,
        chuid=chuid,
        certificates=certificates,
        pin_retries_left=retries,
        pin_verified=retries is None,
        discovery=discovery,
    )
