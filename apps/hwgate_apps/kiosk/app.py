"""Kiosk HTTP routes: the page, the SSE stream of screens, and the actions (PIN,
credential request, PIN change, PIN unblock)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hwgate_apps.kiosk.controller import Kiosk
from hwgate_apps.web import ApiError, read_json

HEARTBEAT = 15.0
_PIN = re.compile(r"[0-9]{6,8}")
_PUK = re.compile(r"[!-~]{8}")  # 8 printable ASCII characters (what a keyboard can type)
# The page loads nothing from elsewhere; the policy makes sure of it.
CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def _page() -> str:
    return resources.files("hwgate_apps.kiosk").joinpath("page.html").read_text()


def build_app(kiosk: Kiosk) -> Starlette:
    """The ASGI app; the kiosk's event watch starts and stops with it."""

    async def page(_request: Request) -> Response:
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        return HTMLResponse(_page(), headers=headers)

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            queue = kiosk.screens.subscribe()
            try:
                while not await request.is_disconnected():
                    try:
                        screen = await asyncio.wait_for(queue.get(), HEARTBEAT)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    yield f"data: {screen.to_json()}\n\n"
            finally:
                kiosk.screens.unsubscribe(queue)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def state(_request: Request) -> Response:
        return Response(kiosk.screens.current.to_json(), media_type="application/json")

    async def pin(request: Request) -> Response:
        body = await read_json(request)
        value = body.pop("pin", "")
        if not isinstance(value, str) or not _PIN.fullmatch(value):
            raise ApiError(400, "pin_format", "the PIN is 6 to 8 digits")
        buffer = bytearray(value.encode("ascii"))
        del value
        screen = await kiosk.submit_pin(buffer, bool(body.get("allow_last_attempt")))
        return Response(screen.to_json(), media_type="application/json")

    def secret(body: dict[str, Any], key: str, pattern: re.Pattern[str], what: str) -> bytearray:
        value = body.pop(key, "")
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ApiError(400, "pin_format", what)
        return bytearray(value.encode("ascii"))

    async def change_pin(request: Request) -> Response:
        body = await read_json(request)
        old = secret(body, "pin", _PIN, "the PIN is 6 to 8 digits")
        new = secret(body, "new_pin", _PIN, "the new PIN is 6 to 8 digits")
        allow_last = bool(body.get("allow_last_attempt"))
        screen = await kiosk.change_pin(old, new, allow_last)
        return Response(screen.to_json(), media_type="application/json")

    async def unblock(request: Request) -> Response:
        body = await read_json(request)
        puk = secret(body, "puk", _PUK, "the PUK is 8 characters")
        new = secret(body, "new_pin", _PIN, "the new PIN is 6 to 8 digits")
        allow_last = bool(body.get("allow_last_puk_attempt"))
        screen = await kiosk.unblock_pin(puk, new, allow_last)
        return Response(screen.to_json(), media_type="application/json")

    async def request_credential(_request: Request) -> Response:
        screen = await kiosk.request_credential()
        return Response(screen.to_json(), media_type="application/json")

    # --- "I have a code": a phone's RFC 8628 sign-in ---

    def screen_of(action: Any) -> Any:
        async def handler(_request: Request) -> Response:
            return Response((await action()).to_json(), media_type="application/json")

        return handler

    async def device_code(request: Request) -> Response:
        body = await read_json(request)
        code = body.get("user_code", "")
        if not isinstance(code, str):
            raise ApiError(400, "user_code_format", "the code is text")
        screen = await kiosk.enter_code(code)
        return Response(screen.to_json(), media_type="application/json")

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as err:
                body = {"error": err.error, "message": err.message}
                return JSONResponse(body, status_code=err.status)

        return endpoint

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        kiosk.start()
        try:
            yield
        finally:
            await kiosk.stop()

    routes = [
        Route("/", page),
        Route("/events", events),
        Route("/api/state", state),
        Route("/api/pin", guarded(pin), methods=["POST"]),
        Route("/api/request", guarded(request_credential), methods=["POST"]),
        Route("/api/change-pin", guarded(change_pin), methods=["POST"]),
        Route("/api/unblock", guarded(unblock), methods=["POST"]),
        Route("/api/device/start", guarded(screen_of(kiosk.start_code)), methods=["POST"]),
        Route("/api/device/code", guarded(device_code), methods=["POST"]),
        Route("/api/device/approve", guarded(screen_of(kiosk.approve_device)), methods=["POST"]),
        Route("/api/device/deny", guarded(screen_of(kiosk.deny_device)), methods=["POST"]),
        Route("/api/device/cancel", guarded(screen_of(kiosk.cancel_code)), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
