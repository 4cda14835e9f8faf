"""HTTP routes of the S/MIME issuance (:mod:`.smime_service` holds the logic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hwgate_apps.enrollment.smime_service import SmimeService
from hwgate_apps.web import read_json


def smime_routes(smime: SmimeService, guarded: Callable[[Any], Any]) -> list[Route]:
    """``/enrollments/{eid}/smime/challenge`` and ``/enrollments/{eid}/smime`` (POST)."""

    async def challenge(request: Request) -> JSONResponse:
        eid = request.path_params["eid"]
        return JSONResponse(await run_in_threadpool(smime.new_challenge, eid), status_code=201)

    async def issue(request: Request) -> JSONResponse:
        body = await read_json(request)
        eid = request.path_params["eid"]
        return JSONResponse(await run_in_threadpool(smime.issue, eid, body), status_code=201)

    return [
        Route("/enrollments/{eid}/smime/challenge", guarded(challenge), methods=["POST"]),
        Route("/enrollments/{eid}/smime", guarded(issue), methods=["POST"]),
    ]
