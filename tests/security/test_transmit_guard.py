"""Raw Transmit is no side door: security APDUs need transmit_security, count and are audited.

The daemon here grants the kiosk role all of CardService, Transmit included (as
the shipped configs used to), to prove the filter is the daemon's own and not
just the policy's RPC list.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hwgate.v1 import card_pb2, card_pb2_grpc, piv_pb2, piv_pb2_grpc
from hwgate_testbed.paths import vpcd_reader
from support.daemon import DaemonProc, error_info, start_daemon

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
PIN = b"123456"
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")
GET_CHUID = bytes.fromhex("00CB3FFF055C035FC10200")
PIN_STATUS = bytes.fromhex("00200080")  # the empty VERIFY: a read
DIGEST = hashlib.sha256(b"kiosk wants a 9A signature").digest()


def verify(pin: bytes = PIN, cla: int = 0x00, ins: int = 0x20) -> bytes:
    padded = pin.ljust(8, b"\xff")
    return bytes([cla, ins, 0x00, 0x80, len(padded)]) + padded


def general_authenticate(digest: bytes = DIGEST, cla: int = 0x00, ins: int = 0x87) -> bytes:
    template = b"\x82\x00\x81" + bytes([len(digest)]) + digest
    body = b"\x7c" + bytes([len(template)]) + template
    return bytes([cla, ins, 0x11, 0x9A, len(body)]) + body + b"\x00"


def chained_general_authenticate() -> list[bytes]:
    """The same GENERAL AUTHENTICATE in two links (CLA 0x10 on the first)."""
    whole = general_authenticate()
    body = whole[5:-1]
    first, last = body[:10], body[10:]
    return [
        bytes([0x10, 0x87, 0x11, 0x9A, len(first)]) + first,
        bytes([0x00, 0x87, 0x11, 0x9A, len(last)]) + last + b"\x00",
    ]


ATTACKS: dict[str, list[bytes]] = {
    "verify_then_sign_9a": [SELECT_PIV, verify(), general_authenticate()],
    "chained_general_authenticate": [SELECT_PIV, *chained_general_authenticate()],
    "verify_proprietary_cla": [SELECT_PIV, verify(cla=0x80)],
    "verify_secure_messaging_cla": [SELECT_PIV, verify(cla=0x0C)],
    "verify_pseudo_apdu_cla": [verify(cla=0xFF)],
    "verify_odd_ins": [SELECT_PIV, verify(ins=0x21)],
    "general_authenticate_odd_ins": [SELECT_PIV, general_authenticate(ins=0x86)],
    "change_reference_data": [
        SELECT_PIV,
        bytes.fromhex("002400801031323334353637383132333435363738"),
    ],
    "reset_retry_counter": [
        SELECT_PIV,
        bytes.fromhex("002C00801031323334353637383132333435363738"),
    ],
    "generate_key_pair": [SELECT_PIV, bytes.fromhex("0047009A05AC03800111")],
    "put_data": [SELECT_PIV, bytes.fromhex("00DB3FFF055C035FC102")],
    "log_out": [SELECT_PIV, bytes.fromhex("0020FF80")],
    "unknown_ins": [SELECT_PIV, bytes.fromhex("00FB0000")],
}

POLICY = """
[policy]
transmit_security = ["admin"]
[policy.roles.kiosk]
allow = ["hwgate.v1.CardService/*", "hwgate.v1.PivService/*"]
[policy.roles.admin]
allow = ["*"]
[[policy.readers]]
pattern = "*"
roles = ["kiosk", "admin"]
"""


@dataclass
class GuardDaemon:
    proc: DaemonProc
    directory: Path

    def stub(self, socket: str) -> card_pb2_grpc.CardServiceStub:
        channel = grpc.insecure_channel(f"unix:{self.directory / socket}")
        return card_pb2_grpc.CardServiceStub(channel)

    def piv(self, socket: str = "hwgate.sock") -> piv_pb2_grpc.PivServiceStub:
        channel = grpc.insecure_channel(f"unix:{self.directory / socket}")
        return piv_pb2_grpc.PivServiceStub(channel)

    def audit_records(self) -> list[dict[str, Any]]:
        path = self.directory / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def retries_left(self) -> int:
        info = self.piv("admin.sock").GetCardInfo(piv_pb2.GetCardInfoRequest(reader=R0), timeout=10)
        return int(info.pin_retries_left)


@pytest.fixture
def guard(testbed: Any, tmp_path: Path) -> Iterator[GuardDaemon]:
    """A daemon per test: the PIN budgets under test start full."""
    kiosk, admin = tmp_path / "hwgate.sock", tmp_path / "admin.sock"
    config = tmp_path / "hwgated.toml"
    config.write_text(
        '[daemon]\nlog_level = "debug"\ngrace_period = 1\n'
        f'[[listen]]\nunix = "{kiosk}"\nrole = "kiosk"\n'
        f'[[listen]]\nunix = "{admin}"\nmode = "0600"\nrole = "admin"\n'
        f'[audit]\nfile = "{tmp_path / "audit.jsonl"}"\n'
        "[limits]\nverify_pin_per_minute = 3\n"
        f"{POLICY}"
    )
    proc = start_daemon(config, kiosk, tmp_path / "hwgated.log")
    yield GuardDaemon(proc, tmp_path)
    proc.stop(signal.SIGKILL)


def transmit(stub: card_pb2_grpc.CardServiceStub, apdus: list[bytes]) -> list[Any]:
    request = card_pb2.TransmitRequest(reader=R0, apdus=apdus, auto_response=True)
    return list(stub.Transmit(request, timeout=20).responses)


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    try:
        call()
    except grpc.RpcError as err:
        return error_info(err)
    raise AssertionError("the call succeeded but was expected to be refused")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_kiosk_cannot_send_security_apdus(guard: GuardDaemon, cards: Any, name: str) -> None:
    cards.insert(0, "alice")
    before = guard.retries_left()
    kiosk = guard.stub("hwgate.sock")
    code, reason, meta = refusal(lambda: transmit(kiosk, ATTACKS[name]))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "APDU_NOT_PERMITTED")
    assert meta["index"] == str(1 if ATTACKS[name][0] == SELECT_PIV else 0)
    assert guard.retries_left() == before  # nothing reached the card
    refused = [r for r in guard.audit_records() if r["action"] == "card.transmit"]
    assert refused[-1]["outcome"] == "APDU_NOT_PERMITTED" and refused[-1]["role"] == "kiosk"


def test_kiosk_may_still_read(guard: GuardDaemon, cards: Any) -> None:
    cards.insert(0, "alice")
    responses = transmit(guard.stub("hwgate.sock"), [SELECT_PIV, GET_CHUID, PIN_STATUS])
    assert [r.status_word for r in responses[:2]] == [0x9000, 0x9000]
    assert responses[2].status_word >> 8 == 0x63  # not verified, retries left in SW2


def test_a_permitted_role_gets_the_signature_and_the_audit_says_what_it_was(
    guard: GuardDaemon, cards: Any
) -> None:
    cards.insert(0, "alice")
    admin = guard.stub("admin.sock")
    responses = transmit(admin, [SELECT_PIV, verify(), general_authenticate()])
    assert [r.status_word for r in responses] == [0x9000, 0x9000, 0x9000]
    signature = _dynamic_auth_signature(responses[2].data)
    info = guard.piv("admin.sock").GetCardInfo(piv_pb2.GetCardInfoRequest(reader=R0), timeout=10)
    nine_a = next(c.der for c in info.certificates if c.slot == piv_pb2.SLOT_PIV_AUTHENTICATION)
    key = x509.load_der_x509_certificate(nine_a).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))

    records = guard.audit_records()
    by_action = {r["action"]: r for r in records if r["action"].startswith("card.transmit.")}
    assert by_action["card.transmit.verify"]["reference"] == "80"
    assert by_action["card.transmit.verify"]["sw"] == "9000"
    assert by_action["card.transmit.verify"]["outcome"] == "ok"
    assert by_action["card.transmit.general_authenticate"]["reference"] == "9A"
    assert by_action["card.transmit.general_authenticate"]["role"] == "admin"
    batch = [r for r in records if r["action"] == "card.transmit"][-1]
    assert batch["security"] == "general_authenticate,verify"
    text = (guard.directory / "audit.jsonl").read_text()
    assert PIN.decode() not in text and PIN.hex() not in text.lower()


def test_chained_general_authenticate_is_allowed_only_with_the_permission(
    guard: GuardDaemon, cards: Any
) -> None:
    cards.insert(0, "alice")
    responses = transmit(
        guard.stub("admin.sock"), [SELECT_PIV, verify(), *chained_general_authenticate()]
    )
    assert responses[-1].status_word == 0x9000
    audited = [
        r for r in guard.audit_records() if r["action"] == "card.transmit.general_authenticate"
    ]
    assert [r["cla"] for r in audited] == ["10", "00"]


def test_raw_verify_counts_against_the_pin_limits(guard: GuardDaemon, cards: Any) -> None:
    """verify_pin_per_minute = 3: raw VERIFYs spend the budget VerifyPin uses too."""
    cards.insert(0, "alice")
    admin = guard.stub("admin.sock")
    for _ in range(3):
        assert transmit(admin, [SELECT_PIV, verify()])[1].status_word == 0x9000
    code, reason, _ = refusal(lambda: transmit(admin, [SELECT_PIV, verify()]))
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    # The card's budget is spent for everyone: the kiosk's VerifyPin is refused too.
    kiosk = guard.stub("hwgate.sock")
    session = kiosk.OpenSession(card_pb2.OpenSessionRequest(reader=R0), timeout=10).session_id
    try:
        request = piv_pb2.VerifyPinRequest(session_id=session, pin=PIN)
        code, reason, _ = refusal(lambda: guard.piv().VerifyPin(request, timeout=10))
        assert reason == "RATE_LIMITED"
    finally:
        kiosk.CloseSession(card_pb2.CloseSessionRequest(session_id=session), timeout=10)


def _dynamic_auth_signature(data: bytes) -> bytes:
    """The 0x82 value inside the 0x7C dynamic authentication template."""
    assert data[0] == 0x7C
    offset = 1
    offset += 1 if data[offset] < 0x80 else 1 + (data[offset] & 0x7F)
    assert data[offset] == 0x82
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    return data[offset : offset + length]


def test_raw_verify_never_spends_the_last_retry(guard: GuardDaemon, cards: Any) -> None:
    cards.insert(0, "alice")
    admin = guard.stub("admin.sock")
    for wrong, left in ((b"654321", 2), (b"11112222", 1)):  # wrong PINs the log scan knows
        assert transmit(admin, [SELECT_PIV, verify(wrong)])[1].status_word == 0x63C0 | left
    code, reason, meta = refusal(lambda: transmit(admin, [SELECT_PIV, verify()]))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LAST_PIN_ATTEMPT")
    assert meta["index"] == "1" and meta["retries_left"] == "1"
    assert guard.retries_left() == 1  # the guarded VERIFY never reached the card
    last = [r for r in guard.audit_records() if r["action"] == "card.transmit.verify"][-1]
    assert last["outcome"] == "LAST_PIN_ATTEMPT" and "sw" not in last
