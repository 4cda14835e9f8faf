"""Who a card is: the job the card manager runs on every insertion.

The daemon injects :func:`read_identity` into ``CardManager`` (the transport
never imports this package); the result rides along in reader listings and
card events.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass

from hwgated.pcsc.connection import Connection
from hwgated.piv.certinfo import CertSummary, summarize
from hwgated.piv.errors import PivParseError
from hwgated.piv.fascn import Fascn
from hwgated.piv.slots import Slot
from hwgated.pivapp.app import PivApp
from hwgated.pivapp.cache import cached_certificate, cached_chuid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardIdentity:
    is_piv: bool
    fascn: Fascn | None = None
    fascn_raw: bytes = b""
    guid: uuid.UUID | None = None
    expiry: datetime.date | None = None
    piv_auth: CertSummary | None = None


def read_identity(connection: Connection) -> CardIdentity:
    """The CHUID's FASC-N, GUID and expiry and the 9A certificate's summary."""
    app = PivApp(connection)
    if not app.is_piv():
        return CardIdentity(is_piv=False)
    chuid = cached_chuid(app)
    auth_cert = cached_certificate(app, Slot.AUTHENTICATION)
    summary = None
    if auth_cert:
        try:
            summary = summarize(auth_cert)
        except PivParseError as exc:
            log.warning("%s: unparseable PIV Authentication certificate: %s", app.reader, exc)
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
