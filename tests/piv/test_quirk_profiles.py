"""Every virtual-card quirk profile through GetCardInfo, VerifyPin, Authenticate and Sign.

One daemon for the module. Each profile's card is inserted once, on first use
(whatever order the tests run in), taken through the kiosk flow - GetCardInfo,
VerifyPin, Authenticate (9A), VerifyPin again and Sign (9C; 9E on the card
without a 9E key) - and removed; every call's outcome is kept. Each
(profile, operation) test then asserts its cell: the precise success, or the
precise gRPC code and ErrorInfo reason. The non-PIV card sits in reader 1
beside a PIV card in reader 0, which must read normally meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from piv_support import PIN, PivDaemon, failure, start_piv_daemon, verify_with_certificate

from hwgate.v1 import common_pb2, piv_pb2
from hwgate_testbed.paths import vpcd_reader
from hwgate_testbed.vcard.atr import atr_for
from hwgate_testbed.vcard.profile import CardProfile, Slot
from hwgate_testbed.vcard.quirk_material import with_material
from hwgate_testbed.vcard.quirks import PROFILES, Quirks, quirk_profile
from support.daemon import error_info

pytestmark = pytest.mark.testbed

ORIGIN = "https://enroll.example.gov"
OPERATIONS = ("GetCardInfo", "VerifyPin", "Authenticate", "Sign")
# piv-after-install is a card that changes during its insertion: tests/piv/test_reprobe.py.
MATRIX_PROFILES = sorted(set(PROFILES) - {"piv-after-install"})
NOT_PIV = "not-piv"
FAILED = grpc.StatusCode.FAILED_PRECONDITION
PLACEHOLDER_REASON = ("fascn", "parity error in character 0b00000")
SLOT_FIELDS = {
    Slot.AUTHENTICATION: piv_pb2.SLOT_PIV_AUTHENTICATION,
    Slot.SIGNATURE: piv_pb2.SLOT_DIGITAL_SIGNATURE,
    Slot.KEY_MANAGEMENT: piv_pb2.SLOT_KEY_MANAGEMENT,
    Slot.CARD_AUTH: piv_pb2.SLOT_CARD_AUTHENTICATION,
}


@dataclass
class Outcome:
    """One call: its response, or its (code, reason, metadata)."""

    response: Any = None
    error: tuple[grpc.StatusCode, str, dict[str, str]] | None = None

    def ok(self) -> Any:
        assert self.error is None, f"expected success, got {self.error}"
        return self.response

    def failed(self) -> tuple[grpc.StatusCode, str]:
        assert self.error is not None, f"expected a failure, got {self.response}"
        return self.error[0], self.error[1]


@dataclass
class Run:
    """One profile's insertion and what each call answered."""

    quirks: Quirks
    profile: CardProfile  # with the profile's material laid over the provisioned slots
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    challenge: bytes = b""
    sign_slot: Slot = Slot.SIGNATURE
    sign_digest: bytes = b""
    neighbour: Outcome | None = None  # GetCardInfo of the PIV card beside a non-PIV one


def _call(fn: Callable[[], Any]) -> Outcome:
    try:
        return Outcome(response=fn())
    except grpc.RpcError as err:
        return Outcome(error=error_info(err))


@dataclass
class QuirkBed:
    daemon: PivDaemon
    runs: dict[str, Run] = field(default_factory=dict)


@pytest.fixture(scope="module")
def bed(testbed: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuirkBed]:
    daemon = start_piv_daemon(tmp_path_factory.mktemp("quirk-profiles"))
    yield QuirkBed(daemon)
    daemon.stop()


@pytest.fixture
def run_of(bed: QuirkBed, cards: Any) -> Callable[[str], Run]:
    def get(name: str) -> Run:
        if name not in bed.runs:
            bed.runs[name] = _run_profile(bed.daemon, cards, name)
        return bed.runs[name]

    return get


def _sign_algorithm(run: Run) -> str:
    key = run.profile.slots[run.sign_slot].key
    return "ECDSA_SHA256" if hasattr(key, "curve") else "RSA_PKCS1_SHA256"


def _run_profile(daemon: PivDaemon, cards: Any, name: str) -> Run:
    quirks = quirk_profile(name)
    slot = 1 if name == NOT_PIV else 0
    if name == NOT_PIV:
        cards.insert(0, "alice")  # the PIV card beside it
    handle = cards.insert(slot, "alice", profile=name)
    profile = with_material(CardProfile.load(handle.card_dir), handle.card_dir, quirks)
    run = Run(quirks, profile, challenge=os.urandom(32))
    if Slot.CARD_AUTH in quirks.absent_slots:
        run.sign_slot = Slot.CARD_AUTH
    run.sign_digest = hashlib.sha256(b"derived credential CSR " + name.encode()).digest()
    reader = handle.reader
    try:
        run.outcomes["GetCardInfo"] = _call(lambda: daemon.info(reader=reader))
        session = daemon.open_session(reader)
        try:
            run.outcomes["VerifyPin"] = _call(lambda: daemon.verify(session))
            auth = piv_pb2.AuthenticateRequest(
                session_id=session, origin=ORIGIN, challenge=run.challenge
            )
            run.outcomes["Authenticate"] = _call(lambda: daemon.piv.Authenticate(auth, timeout=10))
            if run.sign_slot is Slot.SIGNATURE:  # "PIN always": VerifyPin right before
                _call(lambda: daemon.verify(session))
            request = piv_pb2.PivServiceSignRequest(
                session_id=session,
                slot=SLOT_FIELDS[run.sign_slot],
                digest=run.sign_digest,
                algorithm=f"SIGNATURE_ALGORITHM_{_sign_algorithm(run)}",
            )
            run.outcomes["Sign"] = _call(lambda: daemon.piv.Sign(request, timeout=10))
        finally:
            with contextlib.suppress(grpc.RpcError):
                daemon.close_session(session)
        if name == NOT_PIV:
            run.neighbour = _call(lambda: daemon.info(reader=vpcd_reader(0)))
    finally:
        cards.remove(slot)
        if name == NOT_PIV:
            cards.remove(0)
    return run


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _key_name(cert: x509.Certificate) -> str:
    key = cert.public_key()
    curve = getattr(key, "curve", None)
    if curve is not None:
        return {"secp256r1": "EC_P256", "secp384r1": "EC_P384"}[curve.name]
    return f"RSA_{key.key_size}"  # type: ignore[union-attr]


def _check_card_info(run: Run, info: piv_pb2.GetCardInfoResponse) -> None:
    quirks, profile = run.quirks, run.profile
    assert info.atr == atr_for(quirks.t0_only)
    expected = [s for s in SLOT_FIELDS if s in profile.slots and s not in quirks.absent_slots]
    assert [c.slot for c in info.certificates] == [SLOT_FIELDS[s] for s in expected]
    for entry, slot in zip(info.certificates, expected, strict=True):
        cert = profile.slots[slot].certificate
        assert entry.der == _der(cert)  # gunzipped when served gzip'd, whole when chunked
        algorithm = common_pb2.KeyAlgorithm.Name(entry.summary.key_algorithm)
        assert algorithm == f"KEY_ALGORITHM_{_key_name(cert)}"
    if quirks.omit_chuid:
        assert not info.HasField("chuid")
    else:
        assert info.chuid.guid == str(profile.guid)
        day = info.chuid.expiration_date
        assert dt.date(day.year, day.month, day.day) == profile.expiry
        assert info.chuid.HasField("fascn") != quirks.placeholder_fascn
        if not quirks.placeholder_fascn:
            assert info.chuid.fascn.raw == profile.fascn.encode()
        assert info.chuid.signed == quirks.chuid_signed
        unparsed = [(u.field, u.reason) for u in info.chuid.unparsed]
        assert unparsed == ([PLACEHOLDER_REASON] if quirks.placeholder_fascn else [])
    policy = info.pin_policy
    assert policy.application_pin
    assert policy.discovery_present != quirks.omit_discovery
    assert policy.global_pin == policy.global_pin_primary == quirks.global_pin_primary
    assert info.HasField("pin_retries_left") and info.pin_retries_left == profile.pin_retries
    assert not info.pin_verified


def _expected_digest(challenge: bytes) -> bytes:
    sha = hashlib.sha256
    return sha(sha(ORIGIN.encode()).digest() + sha(challenge).digest()).digest()


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("profile_name", MATRIX_PROFILES)
def test_profile_operation(run_of: Callable[[str], Run], profile_name: str, operation: str) -> None:
    run = run_of(profile_name)
    outcome = run.outcomes[operation]
    if run.quirks.never_piv:
        assert outcome.failed() == (FAILED, "NOT_A_PIV_CARD")
        assert run.neighbour is not None
        assert run.neighbour.ok().chuid.guid  # the PIV card beside it reads as usual
        return
    if operation == "GetCardInfo":
        _check_card_info(run, outcome.ok())
    elif operation == "VerifyPin":
        assert outcome.ok() is True  # a response with session_expire_time
    elif operation == "Authenticate":
        _check_authenticate(run, outcome.ok())
    elif run.sign_slot not in run.profile.slots or run.sign_slot in run.quirks.absent_slots:
        assert outcome.failed() == (FAILED, "SLOT_EMPTY")
        assert outcome.error is not None and outcome.error[2] == {"slot": f"{run.sign_slot:02X}"}
    else:
        signed = outcome.ok()
        cert = _der(run.profile.slots[run.sign_slot].certificate)
        assert signed.certificate == cert
        verify_with_certificate(
            cert, signed.signature, run.sign_digest, f"SIGNATURE_ALGORITHM_{_sign_algorithm(run)}"
        )


def _check_authenticate(run: Run, response: piv_pb2.AuthenticateResponse) -> None:
    cert = run.profile.slots[Slot.AUTHENTICATION].certificate
    is_ec = hasattr(cert.public_key(), "curve")
    algorithm = "ECDSA_SHA256" if is_ec else "RSA_PKCS1_SHA256"
    assert (
        common_pb2.SignatureAlgorithm.Name(response.algorithm) == f"SIGNATURE_ALGORITHM_{algorithm}"
    )
    assert response.certificate == _der(cert)
    digest = _expected_digest(run.challenge)
    assert response.digest == digest
    verify_with_certificate(
        response.certificate, response.signature, digest, f"SIGNATURE_ALGORITHM_{algorithm}"
    )
    if Slot.AUTHENTICATION in run.quirks.expired_slots:
        # The daemon proves possession; judging the certificate is the relying party's job.
        assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC)


def test_global_pin_card_changes_the_global_pin(bed: QuirkBed, cards: Any) -> None:
    """ChangePin on a global-PIN-primary card changes the PIN the cardholder uses (00),
    not the PIV application PIN nobody told them."""
    daemon = bed.daemon
    handle = cards.insert(0, "alice", profile="global-pin")
    session = daemon.open_session(handle.reader)
    try:
        change = piv_pb2.ChangePinRequest(session_id=session, old_pin=PIN, new_pin=b"24680135")
        assert daemon.piv.ChangePin(change, timeout=10).HasField("session_expire_time")
        assert failure(lambda: daemon.verify(session))[:2] == (FAILED, "PIN_INCORRECT")
        assert daemon.verify(session, b"24680135")
    finally:
        with contextlib.suppress(grpc.RpcError):
            daemon.close_session(session)
        cards.remove(0)
