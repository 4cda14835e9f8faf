"""A whole hwgated (cards + HSM) on the test bed, for the soak, the fault drill and
the daemon benchmarks (bench/ imports it from here; tests never import bench/).

One place knows how to bring the test bed up, write a config that lets the load
generators do everything (admin role on a Unix socket, generous limits), start the
daemon, wait for it to serve and look at it from outside (/proc: RSS, threads, its
HSM worker children). The drill and the soak then only describe their load and
their faults. Polling here is of conditions the daemon does not push to us (RSS,
/proc, health), always with a deadline.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hwgate.v1 import card_pb2, card_pb2_grpc, common_pb2, hsm_pb2, hsm_pb2_grpc
from hwgate_testbed import orchestrate
from hwgate_testbed.paths import TestbedPaths, vpcd_reader

SERVICES = ("hwgate.v1.CardService", "hwgate.v1.PivService", "hwgate.v1.HsmService")
SERVING = health_pb2.HealthCheckResponse.SERVING
ECDSA = common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256
RSA = common_pb2.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256
EC_KEY, RSA_KEY = "signer-p256", "signer-rsa"
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")
GET_CHUID = bytes.fromhex("00CB3FFF055C035FC10200")
READERS = (vpcd_reader(0), vpcd_reader(1))
POLL = 0.02  # between probes of a condition nobody notifies us about

ALLOW_ALL_POLICY = """[policy.roles.admin]
allow = ["*"]
[[policy.keys]]
pattern = "*"
roles = ["admin"]
[[policy.readers]]
pattern = "*"
roles = ["admin"]
"""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """The first truthy value of *predicate*, or AssertionError after *timeout* s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def testbed_up(root: Path) -> TestbedPaths:
    """The test bed (pcscd, token, cards provisioned) under *root*, no card inserted."""
    paths = TestbedPaths.at(root)
    orchestrate.up(paths, insert_card=False)
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(
    paths: TestbedPaths,
    directory: Path,
    *,
    pcsc: str = "",
    policy: str = ALLOW_ALL_POLICY,
    grace: float = 2.0,
    metrics: bool = True,
    workers: int = 2,
) -> Path:
    """A config serving cards and the test bed token on ``directory/hwgate.sock`` (admin)."""
    sock = directory / "hwgate.sock"
    metrics_line = f'metrics = "127.0.0.1:{free_port()}"\n' if metrics else ""
    config = directory / "hwgated.toml"
    config.write_text(
        f'[daemon]\nlog_level = "warning"\ngrace_period = {grace}\n{metrics_line}'
        f'[[listen]]\nunix = "{sock}"\nmode = "0600"\nrole = "admin"\n'
        f"[pcsc]\n{pcsc}\n"
        "[[hsm.token]]\n"
        f'name = "testbed"\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\n'
        f'token_label = "hwgate-testbed"\npin_file = "{paths.user_pin}"\n'
        f"workers = {workers}\nop_timeout = 10.0\n"
        f'env = {{ SOFTHSM2_CONF = "{paths.softhsm_conf}" }}\n'
        f'[audit]\nfile = "{directory / "audit.jsonl"}"\n'
        "[limits]\nverify_pin_per_minute = 10\nmax_sessions_per_identity = 1000\n"
        "max_streams_per_connection = 1000\n"
        f"{policy}"
    )
    return config


@dataclass
class Gateway:
    """A running hwgated and the ways to look at it."""

    proc: subprocess.Popen[bytes]
    config: Path
    socket: Path
    log: Path
    started: float  # monotonic time of the exec

    @property
    def target(self) -> str:
        return f"unix:{self.socket}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def channel(self, **options: Any) -> grpc.Channel:
        return grpc.insecure_channel(self.target, options=list(options.items()))

    def serving(self, services: tuple[str, ...] = SERVICES, timeout: float = 2.0) -> bool:
        """True when the health service reports every one of *services* SERVING."""
        try:
            with self.channel() as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for service in services:
                    request = health_pb2.HealthCheckRequest(service=service)
                    if stub.Check(request, timeout=timeout).status != SERVING:
                        return False
            return True
        except grpc.RpcError:
            return False

    def wait_serving(self, services: tuple[str, ...] = SERVICES, timeout: float = 60) -> float:
        """Wait for SERVING; returns the monotonic time it was first seen."""

        def check() -> float | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"hwgated exited {self.proc.returncode}; see {self.log}")
            return time.monotonic() if self.serving(services) else None

        result: float = wait_until(check, timeout, f"hwgated to serve {services}")
        return result

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def hsm_workers(self) -> set[int]:
        return hsm_worker_pids(self.pid)

    def metric(self, name: str) -> float | None:
        """One un-labelled sample from the Prometheus endpoint (None without one)."""
        import urllib.request

        address = _config_metrics(self.config)
        if address is None:
            return None
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def _config_metrics(config: Path) -> str | None:
    for line in config.read_text().splitlines():
        if line.startswith("metrics = "):
            return line.split('"')[1]
    return None


def start_gateway(
    config: Path, directory: Path, env: dict[str, str] | None = None, wait: bool = True
) -> Gateway:
    """Exec hwgated on *config*; with *wait*, return once every service is SERVING."""
    log = directory / "hwgated.log"
    out = log.open("ab")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwgated", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    gateway = Gateway(proc, config, directory / "hwgate.sock", log, started)
    if wait:
        try:
            gateway.wait_serving()
        except AssertionError:
            gateway.stop(signal.SIGKILL)
            raise
    return gateway


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def unread_bytes(pid: int) -> int:
    """Bytes waiting unread in the receive queues of `pid`'s Unix sockets (``ss``, from
    iproute2, reads them through sock_diag). For an HSM worker, requests the pool sent
    it that it has not picked up: work in flight on it."""
    out = subprocess.run(["ss", "-xpH"], capture_output=True, text=True, check=True).stdout
    total = 0
    for line in out.splitlines():
        if f"pid={pid}," in line:
            total += int(line.split()[2])  # Netid State Recv-Q Send-Q ...
    return total


def hsm_worker_pids(daemon_pid: int) -> set[int]:
    """The daemon's HSM workers: its children started by multiprocessing spawn
    (the resource tracker, also a spawn child, is not one)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == daemon_pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.add(int(entry.name))
    return pids


# --- client-side helpers --------------------------------------------------------------


def digest_for(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def key_ref(label: str) -> hsm_pb2.KeyRef:
    return hsm_pb2.KeyRef(label=label)


def public_keys(channel: grpc.Channel) -> dict[str, Any]:
    """The test bed signer keys' public halves, to verify what the daemon signs."""
    stub = hsm_pb2_grpc.HsmServiceStub(channel)
    out = {}
    for label in (EC_KEY, RSA_KEY):
        der = stub.GetPublicKey(hsm_pb2.GetPublicKeyRequest(key=key_ref(label)), timeout=30).der
        out[label] = serialization.load_der_public_key(der)
    return out


def verify(public: Any, label: str, signature: bytes, digest: bytes) -> bool:
    """True when *signature* over the SHA-256 *digest* verifies with *public*."""
    from cryptography.exceptions import InvalidSignature

    prehashed = Prehashed(hashes.SHA256())
    try:
        if label == EC_KEY:
            public.verify(signature, digest, ec.ECDSA(prehashed))
        else:
            public.verify(signature, digest, padding.PKCS1v15(), prehashed)
    except InvalidSignature:
        return False
    return True


def sign_once(channel: grpc.Channel, label: str = EC_KEY, timeout: float = 10) -> bytes:
    stub = hsm_pb2_grpc.HsmServiceStub(channel)
    algorithm = ECDSA if label == EC_KEY else RSA
    request = hsm_pb2.HsmServiceSignRequest(
        key=key_ref(label), algorithm=algorithm, digest=digest_for(1)
    )
    return bytes(stub.Sign(request, timeout=timeout).signature)


def transmit_once(channel: grpc.Channel, reader: str, timeout: float = 10) -> int:
    """One SELECT PIV through the daemon; the status word."""
    stub = card_pb2_grpc.CardServiceStub(channel)
    reply = stub.Transmit(
        card_pb2.TransmitRequest(reader=reader, apdus=[SELECT_PIV]), timeout=timeout
    )
    return int(reply.responses[0].status_word)


def sessions_held(channel: grpc.Channel) -> list[str]:
    stub = card_pb2_grpc.CardServiceStub(channel)
    readers = stub.ListReaders(card_pb2.ListReadersRequest(), timeout=10).readers
    return [r.name for r in readers if r.session_held]


def error_reason(err: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call ("" when it carries none)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:
        return ""
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""
