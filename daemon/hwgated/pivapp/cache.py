"""The PIV objects a card holds, read at most once per insertion.

GetCardInfo, Sign and VerifyPin share them; :func:`warm_cache` reads every
one before a VERIFY, so that a "PIN always" signature (9C) can follow it with
nothing left to read in between.
"""

from __future__ import annotations

import logging

from hwgated.piv.errors import NotFound, PivError, PivParseError
from hwgated.piv.objects import Chuid, Discovery
from hwgated.piv.slots import Slot
from hwgated.pivapp.app import PivApp
from hwgated.pivapp.state import UNREAD

log = logging.getLogger(__name__)

CERTIFICATE_SLOTS = (Slot.AUTHENTICATION, Slot.SIGNATURE, Slot.KEY_MANAGEMENT, Slot.CARD_AUTH)


def cached_chuid(app: PivApp) -> Chuid | None:
    """The CHUID, or None when the card has no usable one."""
    state = app.state
    if state.chuid is UNREAD:
        try:
            chuid = app.card().read_chuid()
        except (NotFound, PivParseError) as exc:
            log.info("%s: no usable CHUID: %s", app.reader, exc)
            state.chuid = None
        else:
            for name, why in chuid.unparsed:  # the reason quotes no field value
                log.info(
                    "%s: CHUID field %s unparseable (%s); kept the rest", app.reader, name, why
                )
            state.chuid = chuid
    return state.chuid


def cached_certificate(app: PivApp, slot: Slot) -> bytes | None:
    """The slot's DER certificate, or None when the slot has no usable one."""
    certificates = app.state.certificates
    if slot not in certificates:
        try:
            certificates[slot] = app.card().read_certificate(slot)
        except PivParseError as exc:
            log.info("%s: unusable certificate in slot %s: %s", app.reader, slot.name, exc)
            certificates[slot] = None
    return certificates[slot]


def cached_discovery(app: PivApp) -> Discovery | None:
    """The Discovery object (optional on PIV cards), or None."""
    state = app.state
    if state.discovery is UNREAD:
        try:
            state.discovery = app.card().read_discovery()
        except (PivError, PivParseError) as exc:  # some cards answer 6A80/6982 instead of 6A82
            log.info("%s: no usable Discovery object: %s", app.reader, exc)
            state.discovery = None
    return state.discovery


def warm_cache(app: PivApp) -> None:
    """Read every object GetCardInfo and Sign need, unless already cached.

    Run before a VERIFY: afterwards a "PIN always" signature (9C) must follow
    the VERIFY immediately, so nothing may be left to read between the two.
    """
    cached_chuid(app)
    cached_discovery(app)
    for slot in CERTIFICATE_SLOTS:
        cached_certificate(app, slot)
