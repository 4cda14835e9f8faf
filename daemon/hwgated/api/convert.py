"""Domain objects → hwgate.v1 messages (one direction; requests are read in servicers)."""

from __future__ import annotations

import datetime
import functools

from google.protobuf import timestamp_pb2
from google.type import date_pb2

from hwgate.v1 import card_pb2, common_pb2
from hwgated.pcsc.events import CardEvent, ReaderState
from hwgated.pcsc.manager import ReaderSlot
from hwgated.piv.certinfo import CertSummary
from hwgated.piv.fascn import Fascn
from hwgated.pivapp.identity import CardIdentity


def _reader_state(state: ReaderState | None) -> str | None:
    return None if state is None else f"READER_STATE_{state.value}"


def timestamp(value: datetime.datetime | float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime.datetime):
        ts.FromDatetime(value)
    else:
        ts.FromNanoseconds(int(value * 1e9))
    return ts


def date(value: datetime.date) -> date_pb2.Date:
    """A calendar date as google.type.Date (AIP-142: dates are not timestamps)."""
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def key_algorithm(name: str) -> str:
    """Enum values are set by name: protobuf accepts the label string."""
    return f"KEY_ALGORITHM_{name or 'UNSPECIFIED'}"


def certificate_summary(summary: CertSummary) -> common_pb2.CertificateSummary:
    return common_pb2.CertificateSummary(
        subject=summary.subject,
        issuer=summary.issuer,
        serial_number=summary.serial_number,
        not_before_time=timestamp(summary.not_before),
        not_after_time=timestamp(summary.not_after),
        key_algorithm=key_algorithm(summary.key_algorithm),
        sha256_fingerprint=summary.sha256_fingerprint,
    )


def fascn(value: Fascn, raw: bytes) -> card_pb2.Fascn:
    return card_pb2.Fascn(
        agency_code=value.agency_code,
        system_code=value.system_code,
        credential_number=value.credential_number,
        credential_series=value.cs,
        individual_credential_issue=value.ici,
        person_identifier=value.pi,
        organizational_category=value.oc,
        organizational_identifier=value.oi,
        person_association=value.poa,
        raw=raw,
    )


def card_identity(identity: CardIdentity | None) -> card_pb2.CardIdentity | None:
    if identity is None:
        return None
    message = card_pb2.CardIdentity(is_piv=identity.is_piv)
    if identity.fascn is not None:
        message.fascn.CopyFrom(fascn(identity.fascn, identity.fascn_raw))
    if identity.guid is not None:
        message.guid = str(identity.guid)
    if identity.expiry is not None:
        message.expiration_date.CopyFrom(date(identity.expiry))
    if identity.piv_auth is not None:
        message.piv_auth_certificate.CopyFrom(certificate_summary(identity.piv_auth))
    return message


def reader(slot: ReaderSlot[CardIdentity]) -> card_pb2.Reader:
    return card_pb2.Reader(
        name=slot.name,
        state=_reader_state(slot.state),
        atr=slot.atr,
        card=card_identity(slot.identity),
        session_held=slot.session is not None,
    )


@functools.lru_cache(maxsize=256)
def event(value: CardEvent[CardIdentity]) -> card_pb2.WatchEventsResponse:
    """Converted once per event, not once per subscriber (1000 streams share it).
    Callers must not modify the returned message."""
    return card_pb2.WatchEventsResponse(
        sequence=value.sequence,
        event_time=timestamp(value.time),
        type=f"EVENT_TYPE_{value.type.value}",
        reader=value.reader,
        state=_reader_state(value.state),
        atr=value.atr,
        card=card_identity(value.card),
        snapshot=value.snapshot,
        resync=value.resync,
    )
