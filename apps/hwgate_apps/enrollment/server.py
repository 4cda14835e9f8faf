"""Wire the enrollment server: config -> hwgate client (mTLS) -> service -> ASGI app."""

from __future__ import annotations

import logging

from starlette.applications import Starlette

import hwgate
from hwgate_apps.enrollment.app import build_app
from hwgate_apps.enrollment.config import EnrollmentConfig
from hwgate_apps.enrollment.service import EnrollmentService

log = logging.getLogger(__name__)


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
    if config.client_ca is None or not (config.kiosk_identities and config.admin_identities):
        log.warning("client_ca, kiosk_identities or admin_identities unset: kiosk and admin "
                    "requests will be refused (see EnrollmentConfig)")  # fmt: skip
    service = EnrollmentService(config, connect_hwgate(config))
    app = build_app(service)
    app.state.service = service
    service.lifecycle.start()  # outbox worker (+ periodic lifecycle job if configured)
    return app
