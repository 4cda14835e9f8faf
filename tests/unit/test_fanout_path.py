"""The per-subscriber path of an event: a stream's steps, shutdown, one serialization.

A card event reaches every WatchEvents subscriber through the operations layer
(which ends server streams at shutdown), the servicer's encoder and the method's
serializer. These tests hold what each of them must keep doing, with no daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from hwgate.v1 import card_pb2
from hwgated.api import event_wire
from hwgated.api.card_service import reader_rule
from hwgated.edge.preencoded import PreEncodedLayer
from hwgated.ops.interceptor import OpsLayer
from hwgated.ops.metrics import Metrics
from hwgated.patterns import caller_globs
from hwgated.pcsc.events import CardEvent, EventFilter, EventType

METHOD = "/hwgate.v1.CardService/WatchEvents"


class Context:
    """What the operations layer asks of a grpc.aio servicer context."""

    def __init__(self) -> None:
        self.aborted: tuple[Any, ...] | None = None

    def code(self) -> None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str, trailers: Any = ()) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


def streaming(behavior: Any, shutdown: asyncio.Event) -> Any:
    """*behavior* as the daemon serves it: through the operations layer."""
    handler = grpc.unary_stream_rpc_method_handler(behavior)
    return OpsLayer(Metrics(), shutdown).wrap_handler(handler, METHOD).unary_stream


def test_stream_items_run_in_the_calls_own_task() -> None:
    """No task per item: every step of the servicer runs in the task grpc gave the call
    (the layer used to race each step, in a new task, against the shutdown)."""
    tasks: list[asyncio.Task[Any] | None] = []

    async def servicer(request: Any, context: Any) -> AsyncIterator[int]:
        for i in range(5):
            tasks.append(asyncio.current_task())
            await asyncio.sleep(0)
            yield i

    async def run() -> tuple[list[int], asyncio.Task[Any] | None]:
        wrapped = streaming(servicer, asyncio.Event())
        items = [item async for item in wrapped(None, Context())]
        return items, asyncio.current_task()

    items, caller = asyncio.run(run())
    assert items == [0, 1, 2, 3, 4]
    assert tasks == [caller] * 5


def test_shutdown_ends_a_waiting_stream_with_shutting_down_and_closes_it() -> None:
    async def run() -> tuple[list[int], Context, bool, bool]:
        shutdown, parked, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def servicer(request: Any, context: Any) -> AsyncIterator[int]:
            try:
                yield 1
                parked.set()
                await asyncio.Event().wait()  # waits for an event that never comes
                yield 2
            finally:
                done.set()

        context = Context()
        received: list[int] = []

        async def consume() -> None:
            async for item in streaming(servicer, shutdown)(None, context):
                received.append(item)

        call = asyncio.ensure_future(consume())
        await parked.wait()
        shutdown.set()
        with pytest.raises(grpc.aio.AbortError):
            await asyncio.wait_for(call, 10)  # a generous bound: "did not hang"
        return received, context, done.is_set(), call.cancelled()

    received, context, inner_closed, cancelled = asyncio.run(run())
    assert received == [1]
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.UNAVAILABLE
    assert inner_closed and not cancelled


def test_a_cancelled_call_stays_cancelled_even_while_shutting_down() -> None:
    """The client going away (grpc cancels the call's task) is not turned into an abort."""

    async def run() -> tuple[bool, Context]:
        shutdown, parked = asyncio.Event(), asyncio.Event()

        async def servicer(request: Any, context: Any) -> AsyncIterator[int]:
            parked.set()
            await asyncio.Event().wait()
            yield 0

        context = Context()

        async def consume() -> None:
            async for _ in streaming(servicer, shutdown)(None, context):
                pass

        call = asyncio.ensure_future(consume())
        await parked.wait()
        call.cancel()
        shutdown.set()  # both at once: the client's cancel must win
        with pytest.raises(asyncio.CancelledError):
            await call
        return call.cancelled(), context

    cancelled, context = asyncio.run(run())
    assert cancelled and context.aborted is None


def test_a_stream_that_ends_by_itself_is_not_aborted() -> None:
    async def servicer(request: Any, context: Any) -> AsyncIterator[int]:
        yield 7

    async def run() -> tuple[list[int], Context]:
        context = Context()
        return [i async for i in streaming(servicer, asyncio.Event())(None, context)], context

    items, context = asyncio.run(run())
    assert items == [7] and context.aborted is None


def _event(sequence: int) -> CardEvent[Any]:
    return CardEvent(sequence, 1.5, EventType.CARD_REMOVED, reader="R 00")


def test_a_live_event_is_serialized_once_for_every_subscriber() -> None:
    encoded = event_wire.EncodedEvents(size=2)
    first = _event(10)
    data = [encoded(first) for _ in range(1000)]
    assert all(d is data[0] for d in data)  # the same bytes object: one serialization
    decoded = card_pb2.WatchEventsResponse.FromString(data[0])
    assert (decoded.sequence, decoded.reader) == (10, "R 00")
    assert decoded.type == card_pb2.EVENT_TYPE_CARD_REMOVED
    # An equal but distinct event (e.g. a later one) is its own entry; old ones age out.
    for n in range(11, 15):
        assert card_pb2.WatchEventsResponse.FromString(encoded(_event(n))).sequence == n
    assert encoded(first) == data[0]


def test_preencoded_layer_sends_bytes_as_they_are_and_messages_serialized() -> None:
    message = card_pb2.WatchEventsResponse(sequence=3)
    handler = grpc.unary_stream_rpc_method_handler(
        lambda r, c: None, response_serializer=card_pb2.WatchEventsResponse.SerializeToString
    )
    layer = PreEncodedLayer([METHOD])
    wrapped = layer.wrap_handler(handler, METHOD)
    assert wrapped.response_serializer(b"\x08\x03") == b"\x08\x03"
    assert wrapped.response_serializer(message) == message.SerializeToString()
    assert wrapped.unary_stream is handler.unary_stream
    assert layer.wrap_handler(handler, "/other/Method") is handler


def test_filter_remembers_pattern_answers_but_asks_the_policy_each_time() -> None:
    allowed = {"R 00": True, "R 01": True}
    event_filter = EventFilter(caller_globs(["R 0[0]"], "reader_patterns"),
                               reader_allowed=lambda reader: allowed[reader])  # fmt: skip
    ins = [CardEvent(1, 0.0, EventType.CARD_INSERTED, reader=r) for r in ("R 00", "R 01")]
    assert [event_filter.accepts(e) for e in ins] == [True, False]
    allowed["R 00"] = False  # a new policy (SIGHUP) hides the reader at once
    assert [event_filter.accepts(e) for e in ins] == [False, False]


class Policy:
    """A policy that counts how often it is asked."""

    def __init__(self, allow: bool) -> None:
        self.allow, self.asked = allow, 0

    def allows_reader(self, role: str, reader: str) -> bool:
        self.asked += 1
        return self.allow


def test_reader_rule_asks_each_policy_once_per_reader_and_follows_a_reload() -> None:
    holder = SimpleNamespace(current=Policy(True))
    rule = reader_rule(holder, "kiosk")  # type: ignore[arg-type]
    assert all(rule("R 00") for _ in range(100))
    assert holder.current.asked == 1
    holder.current = Policy(False)  # SIGHUP: the holder gets a new policy object
    assert not rule("R 00")
    assert holder.current.asked == 1
