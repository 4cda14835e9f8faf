"""The operations layer: RPC metrics, and ending server streams at shutdown.

A handler layer of the server's one interceptor (``edge.chain.ChainInterceptor``),
not an interceptor of its own. It is the outermost layer, so it wraps everything
the others do: a call the policy refuses is counted as PERMISSION_DENIED too.

Server-streaming calls (WatchEvents) never end on their own, so a graceful stop
would otherwise wait out the whole grace period and then cut them with
CANCELLED. Instead, once ``shutdown`` is set, each stream stops at its next
await and ends with UNAVAILABLE / SHUTTING_DOWN, which tells a client to
reconnect (elsewhere). The wrapped generator runs in the call's own task, so the
identity the inner (identity) layer sets on the first step is still there on the
last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from hwgated.edge import status as edge_status
from hwgated.edge.handlers import Kind, rewrap
from hwgated.errors import ShuttingDown
from hwgated.ops.metrics import Metrics

HSM_PREFIX = "/hwgate.v1.HsmService/"


def _code_name(context: Any, fallback: str) -> str:
    """The status code the handler set (an abort sets it), else *fallback*."""
    try:
        code = context.code()
    except Exception:
        return fallback
    if code is None:  # nothing set: the usual case, without a walk through the enum
        return fallback
    if isinstance(code, grpc.StatusCode):
        return code.name
    for known in grpc.StatusCode:
        if isinstance(code, int) and known.value[0] == code:
            return known.name
    return fallback


def _mechanism(request: Any) -> str:
    """The algorithm or mechanism an HsmService request names (enum value name)."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None:
        return ""
    field = _mechanism_field(descriptor)
    if field is None:
        return ""
    name, names = field
    number = getattr(request, name)
    return names.get(number) or str(number)


@functools.lru_cache(maxsize=128)  # one entry per request type: the schema does not change
def _mechanism_field(descriptor: Any) -> tuple[str, dict[int, str]] | None:
    """The enum field naming a request's algorithm or mechanism, with its value names."""
    for name in ("algorithm", "mechanism"):
        field = descriptor.fields_by_name.get(name)
        if field is not None and field.enum_type is not None:
            return name, {v.number: v.name for v in field.enum_type.values}
    return None


class OpsLayer:
    """Counts and times every RPC; ends server streams once ``shutdown`` is set."""

    def __init__(self, metrics: Metrics, shutdown: asyncio.Event) -> None:
        self._metrics = metrics
        self._shutdown = shutdown

    def wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """*handler* counted, timed and ended at shutdown (see ``ChainInterceptor``)."""

        def wrap(behavior: Any, kind: Kind) -> Any:
            if inspect.isasyncgenfunction(behavior):
                # Only server streams end at shutdown; a bidirectional SignStream keeps
                # the grace period to finish what it was sent.
                end = kind.server_stream and not kind.client_stream
                return self._wrap_stream(behavior, method, end)
            return self._wrap_unary(behavior, method)

        return rewrap(handler, wrap)

    def _observe(self, method: str, code: str, started: float, request: Any) -> None:
        elapsed = time.perf_counter() - started
        metrics = self._metrics
        metrics.child(metrics.rpcs, method, code).inc()
        metrics.child(metrics.rpc_seconds, method, code).observe(elapsed)
        if method.startswith(HSM_PREFIX):
            mechanism = _mechanism(request)
            metrics.child(metrics.hsm_seconds, method, mechanism, code).observe(elapsed)

    def _wrap_unary(self, behavior: Any, method: str) -> Any:
        async def wrapped(request: Any, context: Any) -> Any:
            started, code = time.perf_counter(), "UNKNOWN"
            try:
                result = await behavior(request, context)
                code = _code_name(context, "OK")
                return result
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            finally:
                self._observe(method, code, started, request)

        return wrapped

    def _wrap_stream(self, behavior: Any, method: str, end_on_shutdown: bool) -> Any:
        async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
            started, code = time.perf_counter(), "UNKNOWN"
            gauge = self._metrics.child(self._metrics.streams, method)
            gauge.inc()
            try:
                if end_on_shutdown:
                    async for item in self._until_shutdown(behavior(request, context), context):
                        yield item
                else:
                    async for item in behavior(request, context):
                        yield item
                code = _code_name(context, "OK")
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"
                raise
            finally:
                gauge.dec()
                self._observe(method, code, started, request)

        return wrapped

    async def _until_shutdown(self, stream: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        """Items of *stream* until it ends or the daemon shuts down (then UNAVAILABLE).

        The stream runs in the call's own task, step by step, and one watcher per
        stream (not per item) cancels that task when the shutdown comes while the
        stream waits for its next item; a stream suspended at a yield (grpc writing)
        stops before its next step. An item costs no task and no ``asyncio.wait``,
        which at 1000 WatchEvents subscribers was most of an event's fan-out.
        """
        task = asyncio.current_task()
        assert task is not None
        waiting = cut = finished = False

        def cut_off(_: object) -> None:
            nonlocal cut
            if waiting and not cut:  # the task is suspended inside *stream*
                cut = True
                task.cancel()

        stopping = asyncio.ensure_future(self._shutdown.wait())
        stopping.add_done_callback(cut_off)
        try:
            while not self._shutdown.is_set():
                waiting = True
                try:
                    item = await stream.__anext__()
                except StopAsyncIteration:
                    finished = True
                    return
                except asyncio.CancelledError:
                    finished = True  # the cancellation went through *stream* and ended it
                    if cut and task.uncancel() == 0:
                        break  # ours alone: end with SHUTTING_DOWN below
                    raise
                except BaseException:
                    finished = True
                    raise
                finally:
                    waiting = False
                yield item
        finally:
            stopping.remove_done_callback(cut_off)
            stopping.cancel()
            if not finished:  # closed while suspended at a yield, or shut down: close *stream*
                with contextlib.suppress(Exception):
                    await _aclose(stream)
        await edge_status.abort(context, ShuttingDown("the daemon is shutting down; reconnect"))


async def _aclose(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
