"""Virtual-card quirk profiles (what real cards do) through the real stack.

zero-fascn: a CHUID whose FASC-N is 25 zero bytes (a placeholder some vendor
cards and Java Card applets ship). The strict FASC-N check refuses it, and the
daemon keeps every other CHUID field instead of dropping the CHUID whole.
"""

from __future__ import annotations

import datetime

import pytest
from piv_support import PivDaemon

from hwgate.v1 import card_pb2
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard.profile import CardProfile
from support.events import EventCollector, is_event

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
ZERO_FASCN_TLV = bytes([0x30, 25]) + bytes(25)


def _date(message: object) -> datetime.date:
    return datetime.date(message.year, message.month, message.day)  # type: ignore[attr-defined]


def test_zero_fascn_card_info_keeps_the_rest_of_the_chuid(
    hwgated: PivDaemon, cards: object
) -> None:
    handle = cards.insert(0, "alice", profile="zero-fascn")  # type: ignore[attr-defined]
    profile = CardProfile.load(handle.card_dir)
    info = hwgated.info(reader=R0)

    assert info.HasField("chuid")
    assert not info.chuid.HasField("fascn")
    assert info.chuid.guid == str(profile.guid)
    assert _date(info.chuid.expiration_date) == profile.expiry
    assert info.chuid.signed == bool(profile.chuid_signature) and info.chuid.signed
    assert ZERO_FASCN_TLV in info.chuid.raw
    assert profile.fascn.encode() not in info.chuid.raw
    assert len(info.certificates) == len(profile.slots)  # the rest of the card is untouched

    log = hwgated.daemon.log.read_text()
    lines = [line for line in log.splitlines() if "CHUID field fascn unparseable" in line]
    assert len(lines) == 1, log
    assert R0 in lines[0]
    assert "no usable CHUID" not in log


def test_zero_fascn_identity_in_list_readers_and_watch_events(
    hwgated: PivDaemon, cards: object
) -> None:
    watcher = EventCollector(hwgated.channel)
    watcher.snapshot()
    handle = cards.insert(0, "alice", profile="zero-fascn")  # type: ignore[attr-defined]
    profile = CardProfile.load(handle.card_dir)

    inserted = watcher.wait_for(is_event("CARD_INSERTED", R0))
    watcher.cancel()
    readers = hwgated.card.ListReaders(card_pb2.ListReadersRequest(), timeout=10).readers
    (listed,) = [r.card for r in readers if r.name == R0]
    for identity in (inserted.card, listed):
        assert identity.is_piv
        assert not identity.HasField("fascn")
        assert identity.guid == str(profile.guid)
        assert _date(identity.expiration_date) == profile.expiry
        assert identity.HasField("piv_auth_certificate")


def test_standard_insert_after_a_quirky_one_has_the_fascn(
    hwgated: PivDaemon, cards: object
) -> None:
    """The quirk is per insertion: the same card inserted plain reads as issued."""
    cards.insert(0, "alice", profile="zero-fascn")  # type: ignore[attr-defined]
    assert not hwgated.info(reader=R0).chuid.HasField("fascn")
    cards.remove(0)  # type: ignore[attr-defined]
    handle = cards.insert(0, "alice")  # type: ignore[attr-defined]
    profile = CardProfile.load(handle.card_dir)
    assert hwgated.info(reader=R0).chuid.fascn.raw == profile.fascn.encode()
