"""A card's identity and PIV objects, read once per insertion and cached.

The cache lives in the worker's per-insertion state, so a new card never sees
the previous card's objects and nothing is read twice for one insertion.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass

from hwgated.pcsc.worker import CardLink
from hwgated.piv.certinfo import CertSummary, summarize
from hwgated.piv.errors import NotFound, PivError, PivParseError
from hwgated.piv.fascn import Fascn
from hwgated.piv.objects import Chuid, Discovery
from hwgated.piv.slots import Slot

log = logging.getLogger(__name__)

_MISSING = object()


@dataclass(frozen=True)
class CardIdentity:
    is_piv: bool
    fascn: Fascn | None = None
    fascn_raw: bytes = b""
    guid: uuid.UUID | None = None
    expiry: datetime.date | None = None
    piv_auth: CertSummary | None = None


def is_piv(link: CardLink) -> bool:
    """SELECT the PIV application once per insertion; False if the card has none."""
    if "is_piv" not in link.cache:
        try:
            link.piv()
            link.cache["is_piv"] = True
        except PivError:
            link.cache["is_piv"] = False
    return bool(link.cache["is_piv"])


def cached_chuid(link: CardLink) -> Chuid | None:
    value = link.cache.get("chuid", _MISSING)
    if value is _MISSING:
        try:
            value = link.piv().read_chuid()
        except (NotFound, PivParseError) as exc:
            log.info("%s: no usable CHUID: %s", link.reader, exc)
            value = None
        link.cache["chuid"] = value
    assert value is None or isinstance(value, Chuid)
    return value


def cached_certificate(link: CardLink, slot: Slot) -> bytes | None:
    key = f"cert:{slot.name}"
    value = link.cache.get(key, _MISSING)
    if value is _MISSING:
        try:
            value = link.piv().read_certificate(slot)
        except PivParseError as exc:
            log.info("%s: unusable certificate in slot %s: %s", link.reader, slot.name, exc)
            value = None
        link.cache[key] = value
    assert value is None or isinstance(value, bytes)
    return value


CERTIFICATE_SLOTS = (Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.KEY_MANAGEMENT, Slot.CARD_AUTH)


def cached_discovery(link: CardLink) -> Discovery | None:
    """The Discovery object (optional on PIV cards), read once per insertion."""
    value = link.cache.get("discovery", _MISSING)
    if value is _MISSING:
        try:
            value = link.piv().read_discovery()
        except (PivError, PivParseError) as exc:  # some cards answer 6A80/6982 instead of 6A82
            log.info("%s: no usable Discovery object: %s", link.reader, exc)
            value = None
        link.cache["discovery"] = value
    assert value is None or isinstance(value, Discovery)
    return value


def warm_piv_cache(link: CardLink) -> None:
    """Read every object GetCardInfo and Sign need, unless already cached.

    Run before a VERIFY: afterwards a "PIN always" signature (9C) must follow
    the VERIFY immediately, so nothing may be left to read between the two.
    """
    cached_chuid(link)
    cached_discovery(link)
    for slot in CERTIFICATE_SLOTS:
        cached_certificate(link, slot)


def read_identity(link: CardLink) -> CardIdentity:
    """The job run on every insertion: who is this card?"""
    if not is_piv(link):
        return CardIdentity(is_piv=False)
    chuid = cached_chuid(link)
    auth_cert = cached_certificate(link, Slot.AUTHENTICATION)
    summary = None
    if auth_cert:
        try:
            summary = summarize(auth_cert)
        except PivParseError as exc:
            log.warning("%s: unparseable PIV Authentication certificate: %s", link.reader, exc)
    if chuid is None:
        return CardIdentity(is_piv=True, piv_auth=summary)
    raw = chuid.fascn.encode() if chuid.fascn is not None else b""
    return CardIdentity(
        is_piv=True,
        fascn=chuid.fascn,
        fascn_raw=raw,
        guid=chuid.guid,
        expiry=chuid.expiry,
        piv_auth=summary,
    )
