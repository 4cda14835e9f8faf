"""GetCardInfo through the real stack: what the card says must be what the test bed issued."""

from __future__ import annotations

import datetime
import hashlib

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from piv_support import PivDaemon, failure

from hwgate.v1 import common_pb2, piv_pb2
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard.profile import CardProfile, Slot
from hwgated.piv.objects import Chuid

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
SLOT_NAMES = {
    Slot.AUTHENTICATION: "SLOT_PIV_AUTHENTICATION",
    Slot.SIGNATURE: "SLOT_DIGITAL_SIGNATURE",
    Slot.KEY_MANAGEMENT: "SLOT_KEY_MANAGEMENT",
    Slot.CARD_AUTH: "SLOT_CARD_AUTHENTICATION",
}
KEY_ALGORITHMS = {"ecc": "KEY_ALGORITHM_EC_P256", "rsa": "KEY_ALGORITHM_RSA_2048"}


@pytest.mark.parametrize(("name", "key_type"), [("alice", "ecc"), ("bob", "rsa")])
def test_card_info_matches_the_issued_profile(
    hwgated: PivDaemon, cards: object, name: str, key_type: str
) -> None:
    handle = cards.insert(0, name, key_type)  # type: ignore[attr-defined]
    profile = CardProfile.load(handle.card_dir)
    info = hwgated.info(reader=R0)

    assert info.reader == R0 and info.atr
    fascn = info.chuid.fascn
    assert (fascn.agency_code, fascn.system_code, fascn.credential_number) == (
        profile.fascn.agency_code,
        profile.fascn.system_code,
        profile.fascn.credential_number,
    )
    assert fascn.person_identifier == profile.fascn.pi
    assert fascn.raw == profile.fascn.encode()
    assert info.chuid.guid == str(profile.guid)
    day = info.chuid.expiration_date
    assert (day.year, day.month, day.day) == profile.expiry.timetuple()[:3]
    assert info.chuid.signed == bool(profile.chuid_signature)
    assert Chuid.parse(info.chuid.raw).guid == profile.guid

    by_slot = {piv_pb2.Slot.Name(c.slot): c for c in info.certificates}
    assert list(by_slot) == [SLOT_NAMES[s] for s in SLOT_NAMES if s in profile.slots]
    for slot, cred in profile.slots.items():
        cert = by_slot[SLOT_NAMES[slot]]
        assert cert.der == cred.certificate.public_bytes(serialization.Encoding.DER)
        assert cert.summary.subject == cred.certificate.subject.rfc4514_string()
        serial = cert.summary.serial_number
        assert int.from_bytes(serial, "big", signed=True) == cred.certificate.serial_number
        assert serial in cred.certificate.public_bytes(serialization.Encoding.DER)
        assert cert.summary.sha256_fingerprint == hashlib.sha256(cert.der).digest()
        assert cert.summary.not_after_time.ToDatetime(datetime.UTC) == (
            cred.certificate.not_valid_after_utc
        )
        assert cert.summary.key_algorithm == common_pb2.KeyAlgorithm.Value(KEY_ALGORITHMS[key_type])

    assert info.HasField("pin_retries_left") and info.pin_retries_left == profile.pin_retries
    assert not info.pin_verified
    assert info.pin_policy.discovery_present and info.pin_policy.application_pin
    assert not info.pin_policy.global_pin and not info.pin_policy.occ


def test_session_info_reports_the_pin_state(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    before = hwgated.info(session_id=session)
    assert not before.pin_verified and before.pin_retries_left == 3
    assert hwgated.verify(session)
    after = hwgated.info(session_id=session)
    assert after.pin_verified and not after.HasField("pin_retries_left")
    assert [c.der for c in after.certificates] == [c.der for c in before.certificates]
    hwgated.close_session(session)
    # Closing the session resets the card: the next caller finds the PIN unverified.
    fresh = hwgated.info(reader=R0)
    assert not fresh.pin_verified and fresh.pin_retries_left == 3


def test_target_is_required_and_unknown_reader_is_not_found(hwgated: PivDaemon) -> None:
    code, reason, _ = failure(lambda: hwgated.info())
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    code, reason, _ = failure(lambda: hwgated.info(reader="No Such Reader"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "READER_NOT_FOUND")
    code, reason, _ = failure(lambda: hwgated.info(session_id="nope"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


def test_empty_reader_is_card_not_present(hwgated: PivDaemon) -> None:
    code, reason, _ = failure(lambda: hwgated.info(reader=vpcd_reader(1)))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CARD_NOT_PRESENT")
