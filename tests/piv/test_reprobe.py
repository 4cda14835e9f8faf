"""A card that becomes a PIV card during its insertion (issue #18 item 3).

The piv-after-install profile answers SELECT PIV with 6A82 until a GlobalPlatform
INSTALL of the PIV applet arrives through Transmit. The daemon must not keep
"not a PIV card" for the whole insertion: GetCardInfo and the reader's card
identity (ListReaders, WatchEvents snapshot) see the PIV card afterwards.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from piv_support import PivDaemon, failure

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2, piv_pb2_grpc
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard.profile import CardProfile
from support.daemon import start_daemon, write_config
from support.events import EventCollector

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
INSTALL_PIV = bytes.fromhex(
    "80E60C002205A0000003080BA00000030800001000010BA0000003080000100001010002C90000"
)


@pytest.fixture
def daemon(testbed: object, tmp_path: Path) -> Iterator[PivDaemon]:
    audit = tmp_path / "audit.jsonl"
    config, kiosk, _admin = write_config(
        tmp_path, extra=f'[audit]\nfile = "{audit}"\n[policy]\ntransmit_security = ["admin"]\n'
    )
    piv = PivDaemon(start_daemon(config, kiosk, tmp_path / "hwgated.log"), audit)
    yield piv
    piv.channel.close()
    piv.daemon.stop(signal.SIGKILL)


def _admin(daemon: PivDaemon) -> card_pb2_grpc.CardServiceStub:
    channel = grpc.insecure_channel(f"unix:{daemon.daemon.socket.parent / 'admin.sock'}")
    return card_pb2_grpc.CardServiceStub(channel)


def _listed(daemon: PivDaemon) -> card_pb2.CardIdentity:
    readers = daemon.card.ListReaders(card_pb2.ListReadersRequest(), timeout=10).readers
    (reader,) = [r for r in readers if r.name == R0]
    return reader.card


def test_card_installed_through_transmit_is_probed_again(daemon: PivDaemon, cards: object) -> None:
    handle = cards.insert(0, "alice", profile="piv-after-install")  # type: ignore[attr-defined]
    profile = CardProfile.load(handle.card_dir)
    assert not _listed(daemon).is_piv
    code, reason, _ = failure(lambda: daemon.info(reader=R0))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_PIV_CARD")

    reply = _admin(daemon).Transmit(
        card_pb2.TransmitRequest(reader=R0, apdus=[INSTALL_PIV]), timeout=20
    )
    assert reply.responses[0].status_word == 0x9000

    info = daemon.info(reader=R0)
    assert info.chuid.guid == str(profile.guid)
    listed = _listed(daemon)
    assert listed.is_piv and listed.guid == str(profile.guid)
    watcher = EventCollector(daemon.channel)
    (state,) = [e.card for e in watcher.snapshot() if e.reader == R0]
    watcher.cancel()
    assert state.is_piv and state.guid == str(profile.guid)


def test_no_piv_card_is_still_refused_after_an_unrelated_transmit(
    daemon: PivDaemon, cards: object
) -> None:
    cards.insert(0, "alice", profile="piv-after-install")  # type: ignore[attr-defined]
    get_challenge = bytes.fromhex("0084000008")
    _admin(daemon).Transmit(card_pb2.TransmitRequest(reader=R0, apdus=[get_challenge]), timeout=20)
    assert not _listed(daemon).is_piv
    code, reason, _ = failure(lambda: daemon.info(reader=R0))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_PIV_CARD")


def test_install_inside_a_session_is_seen_by_it_and_by_the_reader_after_it(
    daemon: PivDaemon, cards: object
) -> None:
    handle = cards.insert(0, "alice", profile="piv-after-install")  # type: ignore[attr-defined]
    profile = CardProfile.load(handle.card_dir)
    admin = _admin(daemon)
    channel = grpc.insecure_channel(f"unix:{daemon.daemon.socket.parent / 'admin.sock'}")
    piv = piv_pb2_grpc.PivServiceStub(channel)
    session = admin.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10).session_id
    try:
        request = piv_pb2.GetCardInfoRequest(session_id=session)
        code, reason, _ = failure(lambda: piv.GetCardInfo(request, timeout=10))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_PIV_CARD")
        admin.Transmit(
            card_pb2.TransmitRequest(session_id=session, apdus=[INSTALL_PIV]), timeout=20
        )
        assert piv.GetCardInfo(request, timeout=10).chuid.guid == str(profile.guid)
        assert not _listed(daemon).is_piv  # the reader's record waits for the session's end
    finally:
        admin.CloseSession(card_pb2.CloseSessionRequest(session_id=session), timeout=10)
    listed = _listed(daemon)
    assert listed.is_piv and listed.guid == str(profile.guid)
