"""Load, crashing workers and a broken module: the daemon keeps serving what it can."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hsm_service_support import HsmDaemon, label, public_key, start_hsm_daemon, verify

from hwgate.v1 import common_pb2, hsm_pb2
from hwgate_testbed.timing import scaled
from support.daemon import error_info
from support.harness import hsm_worker_pids

pytestmark = pytest.mark.testbed

ECDSA = common_pb2.SIGNATURE_ALGORITHM_ECDSA_SHA256
RSA = common_pb2.SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256


def _load(daemon: HsmDaemon, clients: int, stop: threading.Event, key: str, algorithm: int):  # type: ignore[no-untyped-def]
    """*clients* threads, one channel each, signing until *stop*; (ok count, error infos)."""
    ok = Counter[int]()
    failures: list[tuple[grpc.StatusCode, str, dict[str, str]]] = []

    def client(index: int) -> None:
        stub = daemon.stub()
        digest = hashlib.sha256(bytes([index])).digest()
        while not stop.is_set():
            try:
                stub.Sign(
                    hsm_pb2.HsmServiceSignRequest(
                        key=label(key), algorithm=algorithm, digest=digest
                    ),
                    timeout=30,
                )
                ok[index] += 1
            except grpc.RpcError as err:
                failures.append(error_info(err))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    return threads, ok, failures


def test_sixteen_concurrent_clients_never_fail(hsmd) -> None:
    stop = threading.Event()
    threads, ok, failures = _load(hsmd, 16, stop, "signer-p256", ECDSA)
    stop.wait(3.0)  # the load duration, not a synchronization
    stop.set()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert len(ok) == 16 and min(ok.values()) > 0
    digest = hashlib.sha256(b"after").digest()
    reply = hsmd.stub().Sign(
        hsm_pb2.HsmServiceSignRequest(key=label("signer-p256"), algorithm=ECDSA, digest=digest)
    )
    verify(public_key(hsmd.stub(), label("signer-p256")), "ECDSA_SHA256", reply.signature, digest)


def _wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + scaled(timeout)
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)  # polling a condition we cannot subscribe to


def test_segv_of_a_worker_costs_the_callers_nothing(own_hsmd) -> None:
    daemon_pid = own_hsmd.proc.proc.pid
    _wait_for(lambda: len(hsm_worker_pids(daemon_pid)) == 2)
    before = hsm_worker_pids(daemon_pid)
    stop = threading.Event()
    threads, ok, failures = _load(own_hsmd, 8, stop, "issuing-ca", RSA)
    _wait_for(lambda: sum(ok.values()) >= 40)
    victim = min(before)
    os.kill(victim, signal.SIGSEGV)
    _wait_for(lambda: len(hsm_worker_pids(daemon_pid) - before) == 1)  # replaced
    count = sum(ok.values())
    _wait_for(lambda: sum(ok.values()) >= count + 40)  # and serving again under load
    stop.set()
    for thread in threads:
        thread.join(30)
    assert own_hsmd.proc.proc.poll() is None
    # The killed worker's in-flight requests were sent again to the other worker or
    # the replacement: no caller saw the crash.
    assert "its worker died; sending it again" in own_hsmd.proc.log.read_text()
    assert failures == []
    digest = hashlib.sha256(b"after").digest()
    assert (
        own_hsmd.stub()
        .Sign(
            hsm_pb2.HsmServiceSignRequest(key=label("signer-p256"), algorithm=ECDSA, digest=digest)
        )
        .signature
    )


def test_broken_module_leaves_cards_serving_and_hsm_unavailable(testbed, tmp_path: Path) -> None:
    daemon = start_hsm_daemon(tmp_path / "d", testbed, module=str(tmp_path / "no-such-pkcs11.so"))
    try:
        health = health_pb2_grpc.HealthStub(daemon.channel())
        status = {
            service: health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            for service in ("hwgate.v1.CardService", "hwgate.v1.HsmService")
        }
        assert status == {
            "hwgate.v1.CardService": health_pb2.HealthCheckResponse.SERVING,
            "hwgate.v1.HsmService": health_pb2.HealthCheckResponse.NOT_SERVING,
        }
        with pytest.raises(grpc.RpcError) as err:
            daemon.stub().Sign(
                hsm_pb2.HsmServiceSignRequest(
                    key=label("signer-p256"), algorithm=ECDSA, digest=bytes(32)
                ),
                timeout=10,
            )
        assert error_info(err.value) == (
            grpc.StatusCode.UNAVAILABLE,
            "HSM_UNAVAILABLE",
            {"token": "testbed"},
        )
        assert daemon.proc.proc.poll() is None
    finally:
        daemon.proc.stop(signal.SIGKILL)


def test_health_says_which_token_is_down(testbed, tmp_path: Path) -> None:
    daemon = start_hsm_daemon(tmp_path / "d", testbed, broken_tokens=("vault",))
    try:
        health = health_pb2_grpc.HealthStub(daemon.channel())
        service = "hwgate.v1.HsmService"
        names = (service, f"{service}/testbed", f"{service}/vault")
        status = {
            name: health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            for name in names
        }
        assert status == {
            "hwgate.v1.HsmService": health_pb2.HealthCheckResponse.NOT_SERVING,
            "hwgate.v1.HsmService/testbed": health_pb2.HealthCheckResponse.SERVING,
            "hwgate.v1.HsmService/vault": health_pb2.HealthCheckResponse.NOT_SERVING,
        }
        # The working token still signs.
        sign = hsm_pb2.HsmServiceSignRequest(
            key=hsm_pb2.KeyRef(label="signer-p256", token="testbed"),
            algorithm=ECDSA,
            digest=hashlib.sha256(b"per-token").digest(),
        )
        assert daemon.stub().Sign(sign, timeout=10).signature
    finally:
        daemon.proc.stop(signal.SIGTERM)
