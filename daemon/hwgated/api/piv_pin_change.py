"""PivService.ChangePin and UnblockPin: the kiosk's PIN change and PIN unblock.

A mixin of :class:`hwgated.api.piv_service.PivServicer`, kept apart because both
calls carry two secrets each. Their path is VerifyPin's: formats checked before
anything else (PIN_FORMAT, nothing sent), the session's owner and reader policy,
one try from the per-caller and per-card PIN-try limits (a wrong PUK burns a
card's PUK retry as a wrong PIN burns a PIN retry), then the card job
(:mod:`hwgated.pivapp.pinchange`). Each secret is held in a :class:`PinBuffer`
that the worker wipes after use or the servicer wipes when the call ends. The
audit records the reader and the outcome (with retries), never a secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from hwgate.v1 import piv_pb2
from hwgated import errors
from hwgated.api import convert
from hwgated.auth.identity import current_caller
from hwgated.auth.pinlimit import PinLimits
from hwgated.edge.audited import audited
from hwgated.edge.status import timeout_of, unary
from hwgated.pcsc.connection import Connection
from hwgated.pcsc.manager import CardManager
from hwgated.piv.commands import PinFormatError, check_puk
from hwgated.piv.pinbuffer import PinBuffer
from hwgated.pivapp.pinchange import change_pin, unblock_pin

Context = Any  # grpc.aio.ServicerContext
T = TypeVar("T")


class _Servicer(Protocol):
    """What the mixin uses of PivServicer."""

    _manager: CardManager
    _pin_limits: PinLimits

    def _session_reader(self, session_id: str) -> str: ...

    async def _in_session(
        self, session_id: str, fn: Callable[[Connection], T], context: Context
    ) -> T: ...


def _check_pin(pin: PinBuffer, field: str) -> None:
    try:
        pin.check_format()
    except PinFormatError as exc:
        raise errors.PinFormat(f"{field}: {exc}", field=field) from None


def _check_puk(puk: bytes) -> None:
    try:
        check_puk(puk)
    except PinFormatError as exc:
        raise errors.PinFormat(str(exc), field="puk") from None


@contextmanager
def _secrets(*values: bytes) -> Iterator[tuple[PinBuffer, ...]]:
    """One wiped-on-exit buffer per secret (the request's own bytes cannot be wiped)."""
    buffers = tuple(PinBuffer(value) for value in values)
    try:
        yield buffers
    finally:
        for buffer in buffers:
            buffer.abandon()


def _expire_time(servicer: _Servicer, session_id: str) -> Any:
    """The session's end, renewed by the job that just ran (one ttl from now)."""
    ttl = servicer._manager.session(session_id, current_caller().owner).ttl
    return convert.timestamp(time.time() + ttl)


async def _spend_try(servicer: _Servicer, reader: str, action: str, context: Context) -> None:
    """One try from the caller's and the card's PIN-try budgets (RATE_LIMITED when spent)."""
    await servicer._pin_limits.acquire_on(
        servicer._manager, current_caller().owner, reader, action, timeout_of(context)
    )


async def _card_job(
    servicer: _Servicer,
    session_id: str,
    action: str,
    record: dict[str, object],
    counter: str,
    job: Callable[[Connection], int | None],
    context: Context,
) -> Any:
    """The shared path once the formats are checked: the session's reader (owner and
    reader policy), one try from the PIN-try budgets, the card job, and the retry
    counter before/after in the audit *record* (never a secret); the session's end."""
    reader = servicer._session_reader(session_id)
    record["reader"] = reader
    try:
        await _spend_try(servicer, reader, action, context)
        record[f"{counter}_before"] = await servicer._in_session(session_id, job, context)
    except errors.HwgateError as exc:
        record[f"{counter}_left"] = exc.metadata.get("retries_left")
        raise
    return _expire_time(servicer, session_id)


class PinChangeMixin:
    """ChangePin and UnblockPin for PivServicer."""

    @unary
    async def ChangePin(
        self, request: piv_pb2.ChangePinRequest, context: Context
    ) -> piv_pb2.ChangePinResponse:
        servicer: _Servicer = self  # type: ignore[assignment]
        session_id, allow_last = request.session_id, request.allow_last_attempt
        with (
            _secrets(request.old_pin, request.new_pin) as (old, new),
            audited("piv.change_pin") as record,
        ):
            _check_pin(old, "old_pin")
            _check_pin(new, "new_pin")
            end = await _card_job(
                servicer,
                session_id,
                "ChangePin",
                record,
                "retries",
                lambda link: change_pin(link, old, new, allow_last, session_id),
                context,
            )
        return piv_pb2.ChangePinResponse(session_expire_time=end)

    @unary
    async def UnblockPin(
        self, request: piv_pb2.UnblockPinRequest, context: Context
    ) -> piv_pb2.UnblockPinResponse:
        servicer: _Servicer = self  # type: ignore[assignment]
        session_id, allow_last = request.session_id, request.allow_last_puk_attempt
        with (
            _secrets(request.puk, request.new_pin) as (puk, new),
            audited("piv.unblock_pin") as record,
        ):
            _check_puk(request.puk)
            _check_pin(new, "new_pin")
            end = await _card_job(
                servicer,
                session_id,
                "UnblockPin",
                record,
                "puk_retries",
                lambda link: unblock_pin(link, puk, new, allow_last, session_id),
                context,
            )
        return piv_pb2.UnblockPinResponse(session_expire_time=end)
