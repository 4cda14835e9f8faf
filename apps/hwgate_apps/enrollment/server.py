"""Wire the enrollment server: config -> hwgate client (mTLS) -> service -> ASGI app."""

from __future__ import annotations

from starlette.applications import Starlette

import hwgate
from hwgate_apps.enrollment.app import build_app
from hwgate_apps.enrollment.config import EnrollmentConfig
from hwgate_apps.enrollment.service import EnrollmentService


def connect_hwgate(config: EnrollmentConfig) -> hwgate.Client:
    """hwgated over mutual TLS with the enrollment client certificate."""
    return hwgate.connect(
        config.hwgate_target,
        cacert=config.hwgate_cacert,
        cert=config.hwgate_cert,
        key=config.hwgate_key,
    )


def make_app(config: EnrollmentConfig) -> Starlette:
    """The app; its service is reachable as ``app.state.service`` (tests use it)."""
    service = EnrollmentService(config, connect_hwgate(config))
    app = build_app(service)
    app.state.service = service
    service.lifecycle.start()  # outbox worker (+ periodic lifecycle job if configured)
    return app
