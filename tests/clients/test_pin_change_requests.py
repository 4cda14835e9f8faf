"""The client's ChangePin / UnblockPin requests and the PUK errors' classes (no daemon)."""

from __future__ import annotations

import datetime

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

import hwgate
from hwgate import errors
from hwgate import requests as rq
from hwgate.v1 import piv_pb2


def test_change_pin_request() -> None:
    call = rq.change_pin("s1", "123456", bytearray(b"24681357"), allow_last_attempt=True)
    assert (call.stub, call.method) == ("piv", "ChangePin")
    assert call.request == piv_pb2.ChangePinRequest(
        session_id="s1", old_pin=b"123456", new_pin=b"24681357", allow_last_attempt=True
    )
    response = piv_pb2.ChangePinResponse()
    response.session_expire_time.FromSeconds(1_900_000_000)
    assert call.result(response) == datetime.datetime.fromtimestamp(1_900_000_000, datetime.UTC)


def test_unblock_pin_request_and_its_session_form() -> None:
    call = rq.session_unblock_pin("s1", b"12345678", "111111", True)
    assert (call.stub, call.method) == ("piv", "UnblockPin")
    assert call.request == piv_pb2.UnblockPinRequest(
        session_id="s1", puk=b"12345678", new_pin=b"111111", allow_last_puk_attempt=True
    )
    assert rq.session_change_pin("s1", "1", "2").request.allow_last_attempt is False


def _status(reason: str, **metadata: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="hwgate.v1", metadata=metadata))
    return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="m", details=[detail])


def test_puk_errors_have_named_classes_with_retries() -> None:
    wrong = errors.from_status_message(_status("PUK_INCORRECT", retries_left="2"))
    assert isinstance(wrong, hwgate.PukIncorrect) and wrong.retries_left == 2
    assert errors.from_status_message(_status("PUK_INCORRECT")).retries_left is None  # type: ignore[attr-defined]
    assert isinstance(errors.from_status_message(_status("PUK_BLOCKED")), hwgate.PukBlocked)
    last = errors.from_status_message(_status("LAST_PUK_ATTEMPT", retries_left="1"))
    assert isinstance(last, hwgate.LastPukAttempt) and last.retries_left == 1
