"""Wire the kiosk: hwgated (Unix socket, kiosk role) + enrollment client -> ASGI app."""

from __future__ import annotations

from starlette.applications import Starlette

import hwgate
from hwgate_apps.kiosk.app import build_app
from hwgate_apps.kiosk.controller import Kiosk
from hwgate_apps.kiosk.enroll_client import EnrollmentClient


def make_app(
    hwgate_target: str | None,
    enrollment_url: str,
    enrollment_ca: str | None,
    reader: str = "*",
    enrollment_cert: str | None = None,
    enrollment_key: str | None = None,
) -> Starlette:
    """The kiosk app; ``app.state.kiosk`` is the controller (tests read it).

    *enrollment_cert*/*enrollment_key*: the kiosk's client certificate for the
    enrollment server (mTLS)."""
    enrollment = EnrollmentClient(enrollment_url, enrollment_ca, enrollment_cert, enrollment_key)
    kiosk = Kiosk(hwgate.connect(hwgate_target), enrollment, reader)
    app = build_app(kiosk)
    app.state.kiosk = kiosk
    return app
