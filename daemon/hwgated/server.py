"""The daemon: subsystems, one gRPC server per listener, health, reflection, shutdown.

Each listener gets its own ``grpc.aio`` server so every call knows which
listener (hence which local role) it came in on; the servicers are shared.
Only messages move on the asyncio loop; blocking PC/SC and PKCS#11 work runs in
the reader worker threads and HSM worker processes.

Life cycle as systemd sees it (hwgated.ops): READY=1 once the listeners are
bound and the card and HSM subsystems made their first attempt; STATUS= as
readers, cards and HSM state change; RELOADING=1 … READY=1 around SIGHUP;
STOPPING=1 on SIGTERM/SIGINT, after which server streams end with UNAVAILABLE
(SHUTTING_DOWN), unary calls get the grace period, and workers and sockets go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from hwgate.v1 import card_pb2, card_pb2_grpc, hsm_pb2, hsm_pb2_grpc, piv_pb2, piv_pb2_grpc
from hwgated.api import reflection
from hwgated.api.card_service import CardServicer
from hwgated.api.hsm_service import HsmServicer
from hwgated.api.piv_service import PivServicer
from hwgated.auth import audit, listeners
from hwgated.auth.audit import AuditLog
from hwgated.auth.interceptor import IdentityLayer
from hwgated.auth.peerfront import PeerFront, PeerTable, private_socket, remove_private_socket
from hwgated.auth.pinlimit import PinLimits
from hwgated.auth.policy import Policy, PolicyHolder
from hwgated.config import Config, ListenerConfig
from hwgated.edge.chain import ChainInterceptor
from hwgated.edge.preencoded import PreEncodedLayer
from hwgated.hsm import HsmPool, PoolState
from hwgated.hsm.tracker import stop_resource_tracker
from hwgated.logsetup import effective_level, set_level
from hwgated.ops import gcpolicy
from hwgated.ops.interceptor import OpsLayer
from hwgated.ops.metrics import Metrics
from hwgated.ops.notify import Notifier
from hwgated.ops.reload import reload_config
from hwgated.ops.runtime import Operations
from hwgated.pcsc.manager import CardManager
from hwgated.pivapp.identity import read_identity

log = logging.getLogger(__name__)

CARD_SERVICE = card_pb2.DESCRIPTOR.services_by_name["CardService"].full_name
WATCH_EVENTS = f"/{CARD_SERVICE}/WatchEvents"
PIV_SERVICE = piv_pb2.DESCRIPTOR.services_by_name["PivService"].full_name
HSM_SERVICE = hsm_pb2.DESCRIPTOR.services_by_name["HsmService"].full_name


def token_health_name(token: str) -> str:
    """The health service name of one configured token: ``hwgate.v1.HsmService/<name>``."""
    return f"{HSM_SERVICE}/{token}"


HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVICES = (CARD_SERVICE, PIV_SERVICE, HSM_SERVICE)

HSM_READY_TIMEOUT = 10.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Daemon:
    """One running hwgated."""

    def __init__(self, config: Config, log_level_override: str | None = None) -> None:
        self.config = config
        self._log_level_override = log_level_override
        self.policy = PolicyHolder(Policy(config.policy))
        audit.install(AuditLog(config.audit.file))
        self.health = HealthServicer()
        # The composition root: the transport learns who a card is from the PIV layer.
        self.cards = CardManager(
            config.pcsc,
            identify=read_identity,
            max_sessions_per_owner=config.limits.max_sessions_per_identity,
            on_health=self._card_health,
        )
        self.hsm = {
            token.name: HsmPool(token, on_state=self._hsm_health) for token in config.tokens
        }
        self._stopped = asyncio.Event()
        self._shutting_down = asyncio.Event()
        self._servers: list[grpc.aio.Server] = []
        # Unix listeners: a relay that records SO_PEERCRED in front of a private socket.
        self.peers = PeerTable()
        self._fronts: list[PeerFront] = []
        # One PIN-try budget per caller and per card, across listeners and RPCs.
        self.pin_limits = PinLimits(config.limits.verify_pin_per_minute)
        self.notifier = Notifier()
        self.metrics = Metrics()
        self.ops = Operations(self.cards, self.hsm, self.metrics, self.notifier)

    def _card_health(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for service in (CARD_SERVICE, PIV_SERVICE):
            asyncio.get_running_loop().create_task(self.health.set(service, status))
        self.ops.refresh()

    def _hsm_health(self, _state: PoolState | None = None) -> None:
        """HsmService serves when every configured token has a serving worker;
        ``HsmService/<token>`` says which token is down."""
        serving = bool(self.hsm) and all(pool.healthy for pool in self.hsm.values())
        statuses = {HSM_SERVICE: SERVING if serving else NOT_SERVING}
        for name, pool in self.hsm.items():
            statuses[token_health_name(name)] = SERVING if pool.healthy else NOT_SERVING
        asyncio.get_running_loop().create_task(self._set_health(statuses))
        self.ops.refresh()

    async def _set_health(self, statuses: dict[str, Any]) -> None:
        for service, status in statuses.items():
            await self.health.set(service, status)

    def _build_server(self, listener: ListenerConfig) -> grpc.aio.Server:
        size = self.config.daemon.max_message_bytes
        server = grpc.aio.server(
            # One interceptor, the layers composed once per method (edge/chain.py).
            interceptors=[
                ChainInterceptor(
                    [
                        OpsLayer(self.metrics, self._shutting_down),
                        IdentityLayer(
                            listener,
                            lambda: self.policy.current.config,
                            check=lambda caller, method: self.policy.current.check_method(
                                caller, method
                            ),
                            peers=self.peers,
                        ),
                        PreEncodedLayer([WATCH_EVENTS]),  # events serialized once, not per stream
                    ]
                )
            ],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                ("grpc.max_concurrent_streams", self.config.limits.max_streams_per_connection),
                ("grpc.so_reuseport", 0),
                *listeners.connection_options(self.config.limits),
            ],
        )
        card_pb2_grpc.add_CardServiceServicer_to_server(
            CardServicer(
                self.cards, self.policy, self.config.pcsc.max_apdus_per_transmit, self.pin_limits
            ),
            server,
        )
        piv_pb2_grpc.add_PivServiceServicer_to_server(
            PivServicer(self.cards, self.policy, self.pin_limits), server
        )
        hsm_pb2_grpc.add_HsmServiceServicer_to_server(HsmServicer(self.hsm, self.policy), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable((*SERVICES, HEALTH_SERVICE), server)
        return server

    async def start(self) -> None:
        for service in (CARD_SERVICE, PIV_SERVICE):
            await self.health.set(service, NOT_SERVING)
        await self.health.set(HSM_SERVICE, NOT_SERVING)
        await self.health.set("", SERVING)
        self.ops.attach()
        await self.cards.start()
        for pool in self.hsm.values():
            await pool.start()
        # READY only after each subsystem made its first attempt (pcscd, token login).
        await self.cards.wait_first_attempt()
        await asyncio.gather(*(pool.wait_ready(HSM_READY_TIMEOUT) for pool in self.hsm.values()))
        self._hsm_health()
        bound = []
        for listener in self.config.listeners:
            server = self._build_server(listener)
            if listener.unix is not None:
                bound.append(await self._bind_front(server, listener))
            else:
                bound.append(listeners.bind(server, listener))
            self._servers.append(server)
        for server in self._servers:
            await server.start()
        for front in self._fronts:
            await front.start()
        self.ops.start(self.config.daemon.metrics)
        log.info("hwgated serving on %s", ", ".join(bound))
        gcpolicy.freeze_startup_heap()  # full collections skip the start-up heap
        self.notifier.ready()

    async def _bind_front(self, server: grpc.aio.Server, listener: ListenerConfig) -> str:
        """The gRPC server on a private socket, the public one relayed by a PeerFront."""
        assert listener.unix is not None
        listeners.prepare_unix_path(listener.unix)  # refuses a live socket: another hwgated
        private = private_socket(listener.unix)
        if server.add_insecure_port(f"unix:{private}") == 0 and not private.exists():
            raise listeners.ListenerError(f"cannot bind the private socket {private}")
        front = PeerFront(listener, self.peers, private)
        await front.bind()
        self._fronts.append(front)
        return f"unix:{listener.unix}"

    def reload(self) -> None:
        """SIGHUP: apply the config file's policy and log level (see hwgated.ops.reload)."""
        if self.config.path is None:
            log.warning("reload: no config file to re-read")
            return
        self.notifier.reloading()
        try:
            outcome = reload_config(
                self.config.path,
                self.config,
                self.policy,
                log_level_override=self._log_level_override,
            )
            self.config = outcome.config
            set_level(effective_level(self._log_level_override, self.config.daemon.log_level))
            log.debug("policy in force: roles %s", ", ".join(sorted(self.config.policy.roles)))
        finally:
            self.notifier.ready()
            self.ops.refresh()

    def wedge_monitor(self) -> None:
        """Test hook (HWGATE_TEST_HOOKS=1, SIGUSR2): hang the PC/SC monitor thread."""
        if self.cards.monitor is not None:
            self.cards.monitor.wedge()

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop accepting, give in-flight RPCs the grace period, remove socket files."""
        log.info("stopping (grace %.1fs)", self.config.daemon.grace_period)
        self.notifier.stopping()
        self._shutting_down.set()  # server streams end with UNAVAILABLE / SHUTTING_DOWN
        await self.ops.stop()
        await self.health.enter_graceful_shutdown()
        for front in self._fronts:
            front.stop_accepting()
        grace = self.config.daemon.grace_period
        await asyncio.gather(*(server.stop(grace) for server in self._servers))
        self._servers.clear()
        await asyncio.gather(*(front.close() for front in self._fronts))
        for front in self._fronts:
            remove_private_socket(front.public)
        self._fronts.clear()
        await self.cards.stop()
        await asyncio.gather(*(pool.close() for pool in self.hsm.values()))
        await stop_resource_tracker()  # no helper outlives the daemon (hwgated.service stop)
        listeners.remove_unix_sockets(self.config.listeners)
        log.info("stopped")


async def serve(config: Config, log_level_override: str | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT; SIGHUP reloads the config."""
    daemon = Daemon(config, log_level_override)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    if os.environ.get("HWGATE_TEST_HOOKS") == "1":
        loop.add_signal_handler(signal.SIGUSR2, daemon.wedge_monitor)
    try:
        await daemon.start()
        await daemon.wait_stopped()
    finally:
        await daemon.stop()
