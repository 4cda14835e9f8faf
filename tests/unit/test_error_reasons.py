"""One error hierarchy: every ErrorReason has exactly one daemon class and one status code.

The proto enum (protos/hwgate/v1/error.proto), the daemon's error classes
(hwgated.errors) and the edge's reason -> status table (hwgated.edge.status)
must name the same reasons: a reason without a class cannot be raised, one
without a code would leave as INTERNAL, and one outside the enum is a name
clients cannot decode.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from hwgate.v1 import error_pb2
from hwgated import errors
from hwgated.edge import status
from hwgated.edge.audited import outcome
from hwgated.hsm import errors as hsm_errors
from hwgated.piv import errors as piv_errors

PROTO_REASONS = {
    value.name
    for value in error_pb2.ErrorReason.DESCRIPTOR.values
    if value.name != "ERROR_REASON_UNSPECIFIED"
}


def test_daemon_classes_match_the_proto_enum() -> None:
    assert errors.reasons() == PROTO_REASONS


def test_status_table_matches_the_proto_enum() -> None:
    assert set(status.REASON_CODES) == PROTO_REASONS


@pytest.mark.parametrize("reason", sorted(PROTO_REASONS))
def test_each_reason_leaves_with_its_class_and_code(reason: str) -> None:
    cls = errors.error_class(reason)
    assert cls is not None and cls.reason == reason
    error = cls("boom", field="x", count=3)
    code, got_reason, message, metadata = status.classify(error)
    assert (code, got_reason, message) == (status.REASON_CODES[reason], reason, "boom")
    assert metadata == {"field": "x", "count": "3"}
    assert outcome(error) == reason


def test_a_second_class_for_a_reason_is_refused() -> None:
    with pytest.raises(TypeError, match="KEY_NOT_FOUND"):

        class Another(errors.HwgateError):
            reason = "KEY_NOT_FOUND"

    assert errors.error_class("KEY_NOT_FOUND") is errors.KeyNotFound


def test_hsm_names_are_the_daemon_classes() -> None:
    """No second InvalidArgument/InvalidDigest/AlgorithmMismatch in the HSM layer."""
    for name in ("InvalidArgument", "InvalidDigest", "AlgorithmMismatch", "KeyNotFound"):
        assert getattr(hsm_errors, name) is getattr(errors, name)


def test_wire_rebuilds_the_class_from_its_reason() -> None:
    for cls in (errors.KeyExists, errors.InvalidDigest, errors.HsmLoginFailed):
        rebuilt = hsm_errors.error_from_wire(hsm_errors.error_to_wire(cls("m", n=1)))
        assert type(rebuilt) is cls and rebuilt.fields == {"n": 1} and rebuilt.message == "m"


@pytest.mark.parametrize("reason", ["POLICY_DENIED", "SESSION_NOT_OWNED", "NO_SUCH_REASON"])
def test_a_worker_cannot_speak_outside_the_hsm_layer(reason: str) -> None:
    payload = {"reason": reason, "message": "m", "fields": {}}
    assert type(hsm_errors.error_from_wire(payload)) is errors.HsmError


def test_piv_errors_are_translated_at_the_edge() -> None:
    cases = [
        (piv_errors.InvalidPin(0x63C2, 2), "PIN_INCORRECT", {"retries_left": "2"}),
        (piv_errors.InvalidPin(0x6300, None), "PIN_INCORRECT", {"retries_left": ""}),
        (piv_errors.PinBlocked(0x6983), "PIN_BLOCKED", {}),
        (piv_errors.SecurityStatusNotSatisfied(0x6982), "SECURITY_STATUS_NOT_SATISFIED", {}),
        (piv_errors.NotFound(0x6A82), "CARD_ERROR", {"sw": "6A82"}),
        (piv_errors.PivParseError("short"), "CARD_ERROR", {}),
    ]
    for exc, reason, metadata in cases:
        code, got, _, meta = status.classify(exc)
        assert (code, got, meta) == (status.REASON_CODES[reason], reason, metadata)
        assert outcome(exc) == reason


def test_anything_else_is_internal_and_a_cancel_is_audited_as_cancelled() -> None:
    code, reason, message, metadata = status.classify(KeyError("secret-ish detail"))
    assert (code, reason, metadata) == (grpc.StatusCode.INTERNAL, "INTERNAL_ERROR", {})
    assert "secret-ish" not in message
    assert outcome(KeyError("x")) == "INTERNAL_ERROR"
    assert outcome(asyncio.CancelledError()) == "CANCELLED"
