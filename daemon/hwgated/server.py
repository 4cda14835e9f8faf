"""The daemon's gRPC server: listeners, services, health, reflection, shutdown.

Only messages move on the asyncio loop; blocking PC/SC and PKCS#11 work runs in
the reader worker threads and HSM worker processes (later layers).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc, piv_pb2, piv_pb2_grpc

from hwgated.auth import listeners
from hwgated.config import Config

log = logging.getLogger(__name__)

CARD_SERVICE = card_pb2.DESCRIPTOR.services_by_name["CardService"].full_name
PIV_SERVICE = piv_pb2.DESCRIPTOR.services_by_name["PivService"].full_name
HSM_SERVICE = hsm_pb2.DESCRIPTOR.services_by_name["HsmService"].full_name
SERVICES = (CARD_SERVICE, PIV_SERVICE, HSM_SERVICE)


class Daemon:
    """One running hwgated: owns the gRPC server and, later, the hardware subsystems."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.health = HealthServicer()
        self._stopped = asyncio.Event()
        self._server: grpc.aio.Server | None = None

    def _build_server(self) -> grpc.aio.Server:
        size = self.config.daemon.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.so_reuseport", 0),
            ]
        )
        # Until their issues land, the hwgate.v1 services answer UNIMPLEMENTED:
        # the generated base servicers do exactly that for every method.
        card_pb2_grpc.add_CardServiceServicer_to_server(card_pb2_grpc.CardServiceServicer(), server)
        piv_pb2_grpc.add_PivServiceServicer_to_server(piv_pb2_grpc.PivServiceServicer(), server)
        hsm_pb2_grpc.add_HsmServiceServicer_to_server(hsm_pb2_grpc.HsmServiceServicer(), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                *SERVICES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        return server

    async def start(self) -> None:
        server = self._build_server()
        bound = [listeners.bind(server, listener) for listener in self.config.listeners]
        await server.start()
        self._server = server
        for service in ("", *SERVICES):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("hwgated serving on %s", ", ".join(bound))

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop accepting, give in-flight RPCs the grace period, remove socket files."""
        if self._server is None:
            return
        log.info("stopping (grace %.1fs)", self.config.daemon.grace_period)
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.config.daemon.grace_period)
        self._server = None
        listeners.remove_unix_sockets(self.config.listeners)
        log.info("stopped")


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        await daemon.start()
        await daemon.wait_stopped()
    finally:
        await daemon.stop()
