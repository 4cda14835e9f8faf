"""Authenticate (9A, origin-bound) and Sign (9C/9D/9E) through the real stack."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from piv_support import PivDaemon, failure, verify_with_certificate

from hwgate.v1 import common_pb2, piv_pb2
from hwgate_testbed.paths import vpcd_reader
from hwgated.piv.signing import origin_bound_digest

pytestmark = pytest.mark.testbed

R0 = vpcd_reader(0)
ORIGIN = "https://enroll.example.gov"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION
DIGESTS = {"SHA256": hashlib.sha256, "SHA384": hashlib.sha384, "SHA512": hashlib.sha512}


def digest_for(algorithm: str, message: bytes = b"derived credential CSR") -> bytes:
    return DIGESTS[algorithm.rsplit("_", 1)[1]](message).digest()


def authenticate(
    hwgated: PivDaemon, session: str, origin: str = ORIGIN, challenge: bytes | None = None
) -> piv_pb2.AuthenticateResponse:
    request = piv_pb2.AuthenticateRequest(
        session_id=session, origin=origin, challenge=challenge or os.urandom(32)
    )
    return hwgated.piv.Authenticate(request, timeout=10)


def sign(
    hwgated: PivDaemon, session: str, algorithm: str, digest: bytes, slot: str = ""
) -> piv_pb2.PivServiceSignResponse:
    request = piv_pb2.PivServiceSignRequest(
        session_id=session,
        slot=slot or "SLOT_UNSPECIFIED",
        digest=digest,
        algorithm=f"SIGNATURE_ALGORITHM_{algorithm}",
    )
    return hwgated.piv.Sign(request, timeout=10)


@pytest.mark.parametrize(
    ("name", "key_type", "algorithm"),
    [("alice", "ecc", "ECDSA_SHA256"), ("bob", "rsa", "RSA_PKCS1_SHA256")],
)
def test_authenticate_is_origin_bound_and_verifies(
    hwgated: PivDaemon, cards: object, name: str, key_type: str, algorithm: str
) -> None:
    cards.insert(0, name, key_type)  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    assert hwgated.verify(session)
    challenge = os.urandom(48)
    result = authenticate(hwgated, session, challenge=challenge)

    assert common_pb2.SignatureAlgorithm.Name(result.algorithm).endswith(algorithm)
    info = hwgated.info(session_id=session)
    assert result.certificate == info.certificates[0].der  # the 9A certificate
    expected = origin_bound_digest(ORIGIN, challenge)
    assert result.digest == expected
    verify_with_certificate(result.certificate, result.signature, expected, algorithm)
    for other in (origin_bound_digest("https://evil.example", challenge), challenge[:32]):
        with pytest.raises(InvalidSignature):
            verify_with_certificate(result.certificate, result.signature, other, algorithm)

    # 9A is "PIN once": it signs again without another VerifyPin.
    again = authenticate(hwgated, session, challenge=challenge)
    verify_with_certificate(again.certificate, again.signature, expected, algorithm)
    records = [r for r in hwgated.audit_records() if r["action"] == "piv.authenticate"]
    assert [(r["outcome"], r["slot"], r["algorithm"]) for r in records] == [
        ("ok", "9A", algorithm)
    ] * 2


def test_authenticate_needs_the_pin_and_a_real_origin(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    code, reason, _ = failure(lambda: authenticate(hwgated, session))
    assert (code, reason) == (FAILED, "PIN_REQUIRED")
    for origin in ("https://enroll.example.gov/path", "enroll.example.gov", "https://A.example"):
        code, reason, meta = failure(lambda o=origin: authenticate(hwgated, session, o))
        assert (code, reason, meta["field"]) == (INVALID, "INVALID_CHALLENGE", "origin")
    code, reason, meta = failure(lambda: authenticate(hwgated, session, challenge=b"x" * 31))
    assert (code, reason, meta["field"]) == (INVALID, "INVALID_CHALLENGE", "challenge")


@pytest.mark.parametrize(
    ("name", "key_type", "algorithm"),
    [
        ("alice", "ecc", "ECDSA_SHA256"),
        ("alice", "ecc", "ECDSA_SHA384"),  # truncated to the P-256 field size
        ("bob", "rsa", "RSA_PKCS1_SHA256"),
        ("bob", "rsa", "RSA_PKCS1_SHA512"),
        ("bob", "rsa", "RSA_PSS_SHA256"),
        ("bob", "rsa", "RSA_PSS_SHA384"),
    ],
)
def test_sign_9c_after_verify_pin_verifies(
    hwgated: PivDaemon, cards: object, name: str, key_type: str, algorithm: str
) -> None:
    cards.insert(0, name, key_type)  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    digest = digest_for(algorithm)
    assert hwgated.verify(session)
    result = sign(hwgated, session, algorithm, digest)
    verify_with_certificate(result.certificate, result.signature, digest, algorithm)
    certs = {
        piv_pb2.Slot.Name(c.slot): c.der for c in hwgated.info(session_id=session).certificates
    }
    assert result.certificate == certs["SLOT_DIGITAL_SIGNATURE"]
    records = [r for r in hwgated.audit_records() if r["action"] == "piv.sign"]
    assert [(r["outcome"], r["slot"], r["algorithm"]) for r in records] == [("ok", "9C", algorithm)]


def test_9c_is_pin_always(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    digest = digest_for("ECDSA_SHA256")
    code, reason, _ = failure(lambda: sign(hwgated, session, "ECDSA_SHA256", digest))
    assert (code, reason) == (FAILED, "PIN_REQUIRED")

    # GetCardInfo between VerifyPin and Sign must not use up "PIN always".
    assert hwgated.verify(session)
    assert hwgated.info(session_id=session).pin_verified
    first = sign(hwgated, session, "ECDSA_SHA256", digest)
    verify_with_certificate(first.certificate, first.signature, digest, "ECDSA_SHA256")

    # The signature consumed it: the next one needs VerifyPin again.
    code, reason, _ = failure(lambda: sign(hwgated, session, "ECDSA_SHA256", digest))
    assert (code, reason) == (FAILED, "PIN_REQUIRED")
    assert hwgated.verify(session)
    sign(hwgated, session, "ECDSA_SHA256", digest)
    outcomes = [r["outcome"] for r in hwgated.audit_records() if r["action"] == "piv.sign"]
    assert outcomes == ["PIN_REQUIRED", "ok", "PIN_REQUIRED", "ok"]


def test_9d_needs_the_pin_once_and_9e_never(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "bob")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    digest = digest_for("RSA_PKCS1_SHA256")
    card_auth = sign(hwgated, session, "RSA_PKCS1_SHA256", digest, "SLOT_CARD_AUTHENTICATION")
    verify_with_certificate(card_auth.certificate, card_auth.signature, digest, "RSA_PKCS1_SHA256")
    code, reason, _ = failure(
        lambda: sign(hwgated, session, "RSA_PKCS1_SHA256", digest, "SLOT_KEY_MANAGEMENT")
    )
    assert (code, reason) == (FAILED, "PIN_REQUIRED")
    assert hwgated.verify(session)
    for _ in range(2):
        km = sign(hwgated, session, "RSA_PKCS1_SHA256", digest, "SLOT_KEY_MANAGEMENT")
        verify_with_certificate(km.certificate, km.signature, digest, "RSA_PKCS1_SHA256")
    assert km.certificate != card_auth.certificate


def test_sign_refuses_bad_requests_before_the_card(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "alice")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    sha256 = digest_for("ECDSA_SHA256")

    code, reason, meta = failure(
        lambda: sign(hwgated, session, "ECDSA_SHA256", sha256, "SLOT_PIV_AUTHENTICATION")
    )
    assert (code, reason, meta["field"]) == (INVALID, "INVALID_ARGUMENT", "slot")
    code, reason, meta = failure(lambda: sign(hwgated, session, "ECDSA_SHA384", sha256))
    assert (code, reason, meta) == (INVALID, "INVALID_DIGEST", {"expected_length": "48"})
    code, reason, meta = failure(lambda: sign(hwgated, session, "ECDSA_SHA256", sha256[:31]))
    assert (code, reason, meta) == (INVALID, "INVALID_DIGEST", {"expected_length": "32"})
    code, reason, _ = failure(lambda: sign(hwgated, session, "HMAC_SHA256", sha256))
    assert (code, reason) == (INVALID, "ALGORITHM_MISMATCH")
    for algorithm, slot, field in ((0, 0, "algorithm"), (99, 0, "algorithm"), (1, 9, "slot")):
        request = piv_pb2.PivServiceSignRequest(session_id=session, digest=sha256)
        request.algorithm, request.slot = algorithm, slot  # type: ignore[assignment]
        code, reason, meta = failure(lambda r=request: hwgated.piv.Sign(r, timeout=10))
        assert (code, reason, meta["field"]) == (INVALID, "INVALID_ARGUMENT", field)

    # An RSA scheme on the ECC card's key: refused even right after VerifyPin, and the
    # refusal sends nothing, so "PIN always" is still armed for the next Sign.
    assert hwgated.verify(session)
    code, reason, _ = failure(lambda: sign(hwgated, session, "RSA_PKCS1_SHA256", sha256))
    assert (code, reason) == (INVALID, "ALGORITHM_MISMATCH")
    sign(hwgated, session, "ECDSA_SHA256", sha256)


def test_rsa_card_refuses_ecdsa(hwgated: PivDaemon, cards: object) -> None:
    cards.insert(0, "bob")  # type: ignore[attr-defined]
    session = hwgated.open_session(R0)
    assert hwgated.verify(session)
    code, reason, _ = failure(
        lambda: sign(hwgated, session, "ECDSA_SHA256", digest_for("ECDSA_SHA256"))
    )
    assert (code, reason) == (INVALID, "ALGORITHM_MISMATCH")
