"""The PIV application layer notices a client's raw APDUs in the same session.

It does not read anyone else's APDUs: it sees the connection's exchange count
move past its own last command, and then SELECTs PIV again and forgets that
its last command was a VERIFY ("PIN always", 9C).
"""

from __future__ import annotations

import grpc
import pytest
from piv_support import PivDaemon, failure

from hwgate.v1 import card_pb2, piv_pb2
from hwgate_testbed.paths import vpcd_reader

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
SELECT_OTHER = bytes.fromhex("00A4040005A000000001")  # no such application on the card
GET_CHUID = bytes.fromhex("00CB3FFF055C035FC10200")
DIGEST = bytes(range(32))


def transmit(hwgated: PivDaemon, session: str, apdu: bytes) -> card_pb2.ResponseApdu:
    request = card_pb2.TransmitRequest(session_id=session, apdus=[apdu], auto_response=True)
    (response,) = hwgated.card.Transmit(request, timeout=10).responses
    return response


def sign_9c(hwgated: PivDaemon, session: str) -> piv_pb2.PivServiceSignResponse:
    request = piv_pb2.PivServiceSignRequest(
        session_id=session,
        slot="SLOT_DIGITAL_SIGNATURE",
        digest=DIGEST,
        algorithm="SIGNATURE_ALGORITHM_ECDSA_SHA256",
    )
    return hwgated.piv.Sign(request, timeout=10)


def test_a_raw_select_elsewhere_makes_the_application_select_piv_again(
    hwgated: PivDaemon, cards: object
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    assert hwgated.verify(session)  # PIV selected, objects cached, PIN verified
    assert transmit(hwgated, session, SELECT_OTHER).status_word == 0x6A82  # the card left PIV
    # Everything is cached but the PIN status: its empty VERIFY must go to PIV, and
    # the card's answer (the other SELECT dropped the PIN) wins over the session's record.
    info = hwgated.info(session_id=session)
    assert not info.pin_verified and info.pin_retries_left == 3
    assert hwgated.verify(session)
    assert hwgated.info(session_id=session).pin_verified


def test_a_raw_apdu_between_verify_pin_and_a_9c_signature_ends_pin_always(
    hwgated: PivDaemon, cards: object
) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    assert hwgated.verify(session)
    assert transmit(hwgated, session, GET_CHUID).status_word == 0x9000
    code, reason, _ = failure(lambda: sign_9c(hwgated, session))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PIN_REQUIRED")
    assert hwgated.verify(session)
    assert sign_9c(hwgated, session).signature
