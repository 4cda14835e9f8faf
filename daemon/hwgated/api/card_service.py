"""hwgate.v1.CardService: readers, events, sessions and raw APDUs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from google.protobuf import duration_pb2

from hwgate.v1 import card_pb2, card_pb2_grpc
from hwgated import errors
from hwgated.api import convert, event_wire
from hwgated.auth.identity import current_caller
from hwgated.auth.pinlimit import PinLimits
from hwgated.auth.policy import PolicyHolder
from hwgated.auth.transmit_guard import (
    FlaggedApdu,
    audit_flagged,
    check_not_last_try,
    count_pin_tries,
    screen,
)
from hwgated.edge.audited import audited, outcome
from hwgated.edge.status import stream, timeout_of, unary
from hwgated.patterns import caller_globs
from hwgated.pcsc.connection import Connection
from hwgated.pcsc.events import EventFilter, EventType
from hwgated.pcsc.manager import CardManager, Session
from hwgated.piv.apdu import CommandApdu, ResponseApdu, transceive
from hwgated.piv.errors import PivParseError
from hwgated.pivapp.identity import CardIdentity

Context = Any  # grpc.aio.ServicerContext


def _event_types(values: Any) -> frozenset[EventType]:
    types = set()
    for value in values:
        try:
            name = card_pb2.EventType.Name(value).removeprefix("EVENT_TYPE_")
        except ValueError:  # proto3 enums may carry numbers this version does not know
            raise errors.InvalidArgument("unknown event type", field="event_types") from None
        if name == "UNSPECIFIED":
            raise errors.InvalidArgument("event type must be set", field="event_types")
        types.add(EventType[name])
    return frozenset(types)


def parse_apdus(apdus: Any, limit: int) -> list[CommandApdu]:
    """Validate every APDU before any reaches the card."""
    if not apdus:
        raise errors.InvalidArgument("apdus is empty", field="apdus")
    if len(apdus) > limit:
        raise errors.TooManyApdus(f"at most {limit} APDUs per Transmit", max=limit)
    commands = []
    for index, raw in enumerate(apdus):
        try:
            commands.append(CommandApdu.decode(bytes(raw)))
        except PivParseError as exc:
            raise errors.ApduInvalid(f"APDU {index}: {exc}", index=index) from None
    return commands


def _run_batch(
    commands: list[CommandApdu],
    auto_response: bool,
    link: Connection,
    pin_tries: Mapping[int, FlaggedApdu] | None = None,
    responses: list[ResponseApdu] | None = None,
) -> list[ResponseApdu]:
    """Send *commands* in order; a PIN try (by index) is checked for the last retry first.

    Answers are appended to *responses* as they come, so a batch that fails midway
    still tells the audit which of its APDUs reached the card.
    """
    responses = [] if responses is None else responses
    for index, command in enumerate(commands):
        if pin_tries and index in pin_tries:
            check_not_last_try(link.send, pin_tries[index])
        if auto_response:
            responses.append(transceive(link.send, command))
        else:
            raw = link.send(command.encode())
            if len(raw) < 2:
                raise errors.CardError("the card answered with fewer than 2 bytes")
            responses.append(ResponseApdu.parse(raw))
    return responses


def reader_rule(policy: PolicyHolder, role: str) -> Callable[[str], bool]:
    """The policy's per-reader rule for *role*, each reader's answer kept until the
    policy changes (SIGHUP): every event is checked against every subscriber."""
    answers: dict[str, bool] = {}
    seen: list[object] = [None]

    def allowed(reader: str) -> bool:
        current = policy.current
        if current is not seen[0] or len(answers) > 64:
            answers.clear()
            seen[0] = current
        answer = answers.get(reader)
        if answer is None:
            answer = answers[reader] = current.allows_reader(role, reader)
        return answer

    return allowed


def _not_piv(identity: CardIdentity | None) -> bool:
    return identity is None or not identity.is_piv


class CardServicer(card_pb2_grpc.CardServiceServicer):
    def __init__(
        self,
        manager: CardManager,
        policy: PolicyHolder,
        max_apdus: int,
        pin_limits: PinLimits | None = None,
    ) -> None:
        self._manager = manager
        self._policy = policy
        self._max_apdus = max_apdus
        # Shared with PivService (the daemon makes one): a raw VERIFY is a PIN try too.
        self._pin_limits = pin_limits or PinLimits(10)
        self._encoded = event_wire.EncodedEvents()  # one serialization per live event

    @unary
    async def ListReaders(
        self, request: card_pb2.ListReadersRequest, context: Context
    ) -> card_pb2.ListReadersResponse:
        if not self._manager.available:
            raise errors.PcscUnavailable("pcscd is not available")
        caller, policy = current_caller(), self._policy.current
        slots = await self._manager.settled_readers(timeout_of(context))
        return card_pb2.ListReadersResponse(
            readers=[
                convert.reader(slot)
                for slot in slots
                if policy.allows_reader(caller.role, slot.name)
            ]
        )

    @stream
    async def WatchEvents(
        self, request: card_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Serialized WatchEventsResponse messages (sent as they are: edge.preencoded)."""
        event_filter = EventFilter(
            caller_globs(request.reader_patterns, "reader_patterns"),
            _event_types(request.event_types),
            reader_allowed=reader_rule(self._policy, current_caller().role),
        )
        initial, subscription = self._manager.subscribe(request.after_sequence, event_filter)
        try:
            for event in initial:
                yield event_wire.encode(event)
            encoded = self._encoded
            while True:
                yield encoded(await subscription.get())
        finally:
            subscription.close()

    @unary
    async def OpenSession(
        self, request: card_pb2.OpenSessionRequest, context: Context
    ) -> card_pb2.OpenSessionResponse:
        if not request.reader:
            raise errors.InvalidArgument("reader is required", field="reader")
        # Seconds + nanos directly: ToTimedelta() overflows on absurd durations.
        ttl = request.ttl.seconds + request.ttl.nanos / 1e9 if request.HasField("ttl") else None
        if ttl is not None and ttl <= 0:
            raise errors.InvalidArgument("ttl must be positive", field="ttl")
        with audited("card.session_open", reader=request.reader) as record:
            self._policy.current.check_reader(request.reader)
            session = await self._manager.open_session(
                request.reader, ttl, owner=current_caller().owner, timeout=timeout_of(context)
            )
            self._close_if_undelivered(session, context)
            record["session"] = session.id[:8]
        granted = duration_pb2.Duration()
        granted.FromNanoseconds(int(session.ttl * 1e9))
        return card_pb2.OpenSessionResponse(
            session_id=session.id,
            ttl=granted,
            expire_time=convert.timestamp(time.time() + session.ttl),
        )

    def _close_if_undelivered(self, session: Session, context: Context) -> None:
        """Close *session* at once if its OpenSession does not end OK.

        A call cancelled by its client, past its deadline, or failed after the
        session was made cannot hand the id over: the session would hold the
        reader for its whole TTL with nobody able to use or close it.
        """

        def on_done(ctx: Context) -> None:
            code = ctx.code()
            if ctx.cancelled() or code not in (None, grpc.StatusCode.OK):
                self._manager.abandon_session(session)

        context.add_done_callback(on_done)

    @unary
    async def CloseSession(
        self, request: card_pb2.CloseSessionRequest, context: Context
    ) -> card_pb2.CloseSessionResponse:
        owner = current_caller().owner
        with audited("card.session_close", session=request.session_id[:8]) as record:
            session = self._manager.session(request.session_id, owner, closing=True)
            record["reader"] = session.reader
            await self._manager.close_session(request.session_id, owner)
        # Transmits inside the session may have made the card a PIV card; the
        # reader's identity is refreshed now that nobody holds it (see Transmit).
        await self._manager.reidentify(session.reader, _not_piv, timeout_of(context))
        return card_pb2.CloseSessionResponse()

    @unary
    async def Transmit(
        self, request: card_pb2.TransmitRequest, context: Context
    ) -> card_pb2.TransmitResponse:
        target = request.reader or f"session:{request.session_id[:8]}"
        caller, policy = current_caller(), self._policy.current
        with audited("card.transmit", reader=target, apdus=len(request.apdus)) as record:
            commands = parse_apdus(request.apdus, self._max_apdus)
            try:
                flagged = screen(commands, caller, policy)
            except errors.ApduNotPermitted as exc:
                record["refused"] = exc.metadata.get("kind")
                raise
            if request.reader:
                policy.check_reader(request.reader)
                reader = request.reader
            elif request.session_id:
                reader = self._manager.session(request.session_id, caller.owner).reader
            else:
                raise errors.InvalidArgument("a reader or a session_id is required", field="reader")
            if flagged:
                record["security"] = ",".join(sorted({f.kind.value for f in flagged}))
                await count_pin_tries(
                    flagged,
                    self._pin_limits,
                    self._manager,
                    caller.owner,
                    reader,
                    timeout_of(context),
                )
            auto = request.auto_response
            pin_tries = {f.index: f for f in flagged if f.pin_try}
            answered: list[ResponseApdu] = []
            try:
                responses = await self._manager.run(
                    lambda link: _run_batch(commands, auto, link, pin_tries, answered),
                    owner=caller.owner,
                    reader=request.reader or None,
                    session_id=request.session_id or None,
                    timeout=timeout_of(context),
                )
            except BaseException as exc:
                audit_flagged(flagged, reader, list(answered), outcome(exc))
                raise
            audit_flagged(flagged, reader, responses)
        if request.reader:
            # A card that was no PIV card may be one now (an applet installed or
            # personalized through this Transmit): ListReaders and WatchEvents
            # snapshots then show its identity without a reinsertion.
            await self._manager.reidentify(reader, _not_piv, timeout_of(context))
        return card_pb2.TransmitResponse(
            responses=[card_pb2.ResponseApdu(data=r.data, status_word=r.sw) for r in responses]
        )
