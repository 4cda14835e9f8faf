"""HTTP routes of the RFC 8628 device sign-in; the logic is in :mod:`.device_service`.

The two OAuth endpoints take ``application/x-www-form-urlencoded`` bodies
(RFC 8628 §3.1, §3.4) and answer JSON that is never cached (RFC 6749 §5.1);
the kiosk's claim/approve/deny calls are JSON like the rest of the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hwgate import HwgateError
from hwgate_apps.enrollment.device_service import DeviceFlow, OAuthError
from hwgate_apps.web import MAX_BODY, ApiError, read_json

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Sign in your phone</title></head><body><main>
<h1>Sign in your phone with your smart card</h1>
<p>Go to a smart-card kiosk, choose <b>I have a code</b>, type the code your phone
shows, then insert your card and enter your PIN.</p></main></body></html>"""


async def read_form(request: Request) -> dict[str, str]:
    """The form parameters; each at most once (RFC 6749 §3.2), else invalid_request."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"the body must be {FORM}")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise OAuthError("invalid_request", "request body too large")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body is not a form") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise OAuthError("invalid_request", f"{key} is given more than once")
        params[key] = value
    return params


def oauth_error(err: OAuthError) -> JSONResponse:
    body = {"error": err.error, "error_description": err.description}
    headers = dict(NO_STORE)
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="device"'  # RFC 6749 §5.2 invalid_client
    return JSONResponse(body, status_code=err.status, headers=headers)


def device_routes(flow: DeviceFlow, authorize_kiosk: Callable[[Request], object]) -> list[Route]:
    """The routes to add to the enrollment server's app; *authorize_kiosk* raises
    :class:`ApiError` unless the caller proved it is a kiosk (:mod:`.peers`)."""

    def oauth(handler: Callable[[dict[str, str]], dict[str, Any]]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                params = await read_form(request)
                result = await run_in_threadpool(handler, params)
            except OAuthError as err:
                return oauth_error(err)
            except HwgateError:
                return oauth_error(OAuthError("temporarily_unavailable", "HSM unavailable", 503))
            return JSONResponse(result, headers=NO_STORE)

        return endpoint

    def kiosk(handler: Callable[[Request], Awaitable[dict[str, Any]]]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                authorize_kiosk(request)
                return JSONResponse(await handler(request))
            except ApiError as err:
                body = {"error": err.error, "message": err.message}
                return JSONResponse(body, status_code=err.status)
            except HwgateError as err:
                body = {"error": "hwgate_error", "message": f"{err.code.name} {err.reason}"}
                return JSONResponse(body, status_code=502)

        return endpoint

    async def claim(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        client = request.client.host if request.client else "unknown"
        return await run_in_threadpool(flow.claim, body, client)  # type: ignore[no-any-return]

    async def approve(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(flow.approve, await read_json(request))  # type: ignore[no-any-return]

    async def deny(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(flow.deny, await read_json(request))  # type: ignore[no-any-return]

    async def page(_request: Request) -> Response:
        return HTMLResponse(_PAGE, headers={"Content-Security-Policy": "default-src 'none'"})

    return [
        Route("/device_authorization", oauth(flow.authorize), methods=["POST"]),
        Route("/token", oauth(flow.token), methods=["POST"]),
        Route("/device", page, methods=["GET"]),
        Route("/device/claim", kiosk(claim), methods=["POST"]),
        Route("/device/approve", kiosk(approve), methods=["POST"]),
        Route("/device/deny", kiosk(deny), methods=["POST"]),
    ]
