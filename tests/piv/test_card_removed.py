"""A card pulled while VERIFY is in flight: CARD_REMOVED, never a wrong PIN.

The card here is the test bed's own PIV applet served over vpcd from this test
process, with one change: when the VERIFY that carries the PIN arrives it
stops answering, tells the test, and the test pulls the card (closes the vpcd
connection) while hwgated waits for the answer. Real pcscd, real vpcd, real
daemon; the applet's retry counter is inspected directly afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from piv_support import PIN, PivDaemon

from hwgate.v1 import piv_pb2
from hwgate_testbed import cards as testbed_cards
from hwgate_testbed import pcscd
from hwgate_testbed.paths import vpcd_port, vpcd_reader
from hwgate_testbed.vcard.applet import PivApplet
from hwgate_testbed.vcard.atr import ATR
from hwgate_testbed.vcard.profile import CardProfile
from hwgate_testbed.vcard.vpcd import connect, serve
from support.daemon import error_info
from support.events import EventCollector, is_event

pytestmark = pytest.mark.testbed

SLOT = 1  # a reader the `cards` fixture does not use in this test
READER = vpcd_reader(SLOT)
INS_VERIFY = 0x20
WAIT = 10.0


class StallingApplet(PivApplet):
    """Answers everything like the virtual card, except that a VERIFY with a PIN hangs."""

    def __init__(self, profile: CardProfile) -> None:
        super().__init__(profile)
        self.verify_arrived = threading.Event()
        self.release = threading.Event()

    def process(self, apdu: bytes) -> bytes:
        if len(apdu) > 5 and apdu[1] == INS_VERIFY:
            self.verify_arrived.set()
            self.release.wait(WAIT)
            return bytes.fromhex("6F00")  # never delivered: the card is gone by then
        return super().process(apdu)


@dataclass
class ServedCard:
    applet: StallingApplet
    sock: socket.socket
    thread: threading.Thread

    def pull(self) -> None:
        """Remove the card: vpcd sees its connection close."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def stalling_card(testbed: object) -> Iterator[ServedCard]:
    paths = testbed.paths  # type: ignore[attr-defined]
    applet = StallingApplet(CardProfile.load(testbed_cards.ensure_card(paths, "alice")))
    stop = threading.Event()
    sock = connect("127.0.0.1", vpcd_port(SLOT), stop, timeout=WAIT)
    assert sock is not None, "vpcd did not accept the card"
    thread = threading.Thread(target=serve, args=(sock, applet, ATR, stop), daemon=True)
    thread.start()
    card = ServedCard(applet, sock, thread)
    try:
        yield card
    finally:
        applet.release.set()
        stop.set()
        card.pull()
        thread.join(WAIT)
        pcscd.wait_for_reader_state(READER, False, time.monotonic() + WAIT)


def test_card_pulled_during_verify_is_card_removed(
    hwgated: PivDaemon, stalling_card: ServedCard
) -> None:
    watcher = EventCollector(hwgated.channel)
    watcher.wait_for(lambda e: e.reader == READER and e.card.is_piv)  # snapshot or insert
    session = hwgated.open_session(READER)
    request = piv_pb2.VerifyPinRequest(session_id=session, pin=PIN)
    call = hwgated.piv.VerifyPin.future(request, timeout=WAIT * 2)

    assert stalling_card.applet.verify_arrived.wait(WAIT), "the VERIFY never reached the card"
    stalling_card.pull()
    with pytest.raises(grpc.RpcError) as caught:
        call.result()
    stalling_card.applet.release.set()

    code, reason, meta = error_info(caught.value)  # type: ignore[arg-type]
    assert (code, reason) == (grpc.StatusCode.ABORTED, "CARD_REMOVED"), caught.value.details()
    assert meta.get("reader") == READER
    assert stalling_card.applet.pin_tries_left == 3  # the VERIFY was never processed
    watcher.wait_for(is_event("CARD_REMOVED", READER))
    watcher.cancel()
    outcomes = [r["outcome"] for r in hwgated.audit_records() if r["action"] == "piv.verify_pin"]
    assert outcomes == ["CARD_REMOVED"]
    assert b"PIN_INCORRECT" not in hwgated.daemon.log.read_bytes()
