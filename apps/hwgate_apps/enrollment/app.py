"""HTTP routes of the enrollment server (Starlette); the logic is in :mod:`.service`.

The service calls block (the hwgate client, the database): they run in
Starlette's thread pool, never on the event loop. Each route names the role its
caller must prove with a TLS client certificate (:mod:`.peers`): kiosks start
enrollments, administrators list and revoke, the phone's code redemption is
public (the activation code is its credential).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hwgate import HwgateError
from hwgate_apps.enrollment.device_app import device_routes
from hwgate_apps.enrollment.peers import ADMIN, KIOSK, PUBLIC, authorize
from hwgate_apps.enrollment.service import EnrollmentService
from hwgate_apps.enrollment.smime_app import smime_routes
from hwgate_apps.web import ApiError, read_json


def _error(err: ApiError) -> JSONResponse:
    return JSONResponse({"error": err.error, "message": err.message}, status_code=err.status)


def _hwgate_error(err: HwgateError) -> JSONResponse:
    body = {"error": "hwgate_error", "message": f"{err.code.name} {err.reason}".strip()}
    return JSONResponse(body, status_code=502)


def build_app(service: EnrollmentService) -> Starlette:
    """The ASGI app over *service*."""

    def guarded(handler: Any, role: str) -> Any:
        """*handler* for callers with *role* (KIOSK, ADMIN or PUBLIC), errors as JSON."""

        async def endpoint(request: Request) -> JSONResponse:
            try:
                authorize(request, role, service.config)
                return await handler(request)
            except ApiError as err:
                return _error(err)
            except HwgateError as err:
                return _hwgate_error(err)

        return endpoint

    async def challenge(request: Request) -> JSONResponse:
        body = await read_json(request)
        result = await run_in_threadpool(service.new_challenge, str(body.get("kiosk_session", "")))
        return JSONResponse(result, status_code=201)

    async def enroll(request: Request) -> JSONResponse:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(service.enroll, body), status_code=201)

    async def certificate(request: Request) -> JSONResponse:
        body = await read_json(request)
        eid = request.path_params["eid"]
        authorization = request.headers.get("authorization", "")  # a signed-in device's token
        result = await run_in_threadpool(service.issue, eid, body, authorization)
        return JSONResponse(result, status_code=201)

    async def listing(request: Request) -> JSONResponse:
        fasc_n = request.query_params.get("fasc_n", "")
        result = await run_in_threadpool(service.list_by_fasc_n, fasc_n)
        return JSONResponse({"enrollments": result})

    async def revoke(request: Request) -> JSONResponse:
        result = await run_in_threadpool(service.revoke, request.path_params["eid"])
        return JSONResponse(result)

    async def crl(request: Request) -> Response:
        der = await run_in_threadpool(service.lifecycle.crl.current)
        return Response(der, media_type="application/pkix-crl")

    routes = [
        Route("/crl/issuing-ca.crl", guarded(crl, PUBLIC), methods=["GET"]),
        Route("/enrollments/challenge", guarded(challenge, KIOSK), methods=["POST"]),
        Route("/enrollments", guarded(enroll, KIOSK), methods=["POST"]),
        Route("/enrollments", guarded(listing, ADMIN), methods=["GET"]),
        Route("/enrollments/{eid}/certificate", guarded(certificate, PUBLIC), methods=["POST"]),
        Route("/enrollments/{eid}/revoke", guarded(revoke, ADMIN), methods=["POST"]),
        # RFC 8628: the phone's endpoints are OAuth's (public); claim, approve, deny: kiosks.
        *device_routes(service.devices, lambda request: authorize(request, KIOSK, service.config)),
        # The phone's S/MIME request is signed with its derived PIV Auth key (checked there).
        *smime_routes(service.smime, lambda handler: guarded(handler, PUBLIC)),
    ]
    return Starlette(routes=routes)
