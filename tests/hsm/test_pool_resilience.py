"""Crashed, hung and unusable workers: the pool isolates them and recovers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hsm_support import USER_PIN, LoopThread, eventually

from hwgate_testbed.timing import scaled
from hwgated.hsm import (
    HsmLoginFailed,
    HsmPool,
    HsmUnavailable,
    HsmWorkerLost,
    PoolState,
    SignAlgorithm,
)

DIGEST = hashlib.sha256(b"resilience").digest()
PoolFactory = Callable[..., HsmPool]


def test_segfaulting_worker_is_replaced_mid_load(
    own_pool: PoolFactory, loop_thread: LoopThread
) -> None:
    pool = own_pool(pipeline_depth=4)
    victim = pool.worker_pids()[0]

    async def scenario() -> tuple[int, int]:
        ok = lost = 0
        stop = asyncio.Event()

        async def caller() -> None:
            nonlocal ok, lost
            while not stop.is_set():
                try:
                    await pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST)
                    ok += 1
                except HsmWorkerLost:
                    lost += 1

        tasks = [asyncio.create_task(caller()) for _ in range(8)]
        await eventually(lambda: ok > 200, 10, "load to build up")
        os.kill(victim, signal.SIGSEGV)
        await eventually(lambda: victim not in pool.worker_pids(), 10, "the crash to be seen")
        await eventually(lambda: pool.state is PoolState.READY, 30, "a replacement worker")
        # READY needs one live worker; the replacement may still be starting (a stress
        # run got here with one): wait for the pool to be whole again.
        await eventually(lambda: len(pool.worker_pids()) == 2, 30, "both workers")
        before = ok
        await eventually(lambda: ok > before + 200, 10, "signing to continue")
        stop.set()
        await asyncio.gather(*tasks)  # any error other than HsmWorkerLost fails here
        return ok, lost

    ok, lost = loop_thread.run(scenario())
    assert ok > 400
    assert lost == 0  # in-flight requests are resent to the other worker or the replacement
    assert len(pool.worker_pids()) == 2 and victim not in pool.worker_pids()
    assert loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))


def test_hung_worker_is_killed_after_op_timeout(
    own_pool: PoolFactory, loop_thread: LoopThread
) -> None:
    pool = own_pool(workers=1, op_timeout=1.0)
    (victim,) = pool.worker_pids()
    os.kill(victim, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(HsmWorkerLost) as lost:
        loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < scaled(5.0), elapsed
    assert lost.value.reason == "HSM_WORKER_LOST"
    # The next request waits for the replacement and succeeds.
    assert loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))
    assert pool.worker_pids() != [victim] and pool.healthy


def test_broken_module_leaves_pool_down_and_retrying(
    own_pool: PoolFactory, loop_thread: LoopThread
) -> None:
    pool = own_pool(
        wait=False, module="/nonexistent/libvendor-pkcs11.so", backoff_initial=0.05, backoff_max=0.2
    )
    assert loop_thread.run(pool.wait_ready(30)) is False
    assert pool.state is PoolState.DOWN and not pool.healthy
    assert pool.last_error is not None and pool.last_error.reason == "HSM_UNAVAILABLE"
    assert "libvendor-pkcs11.so" in pool.last_error.message
    with pytest.raises(HsmUnavailable) as refused:
        loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))
    assert not isinstance(refused.value, HsmLoginFailed)
    loop_thread.run(eventually(lambda: pool.start_failures >= 3, 30, "background retries"))
    assert pool.state is PoolState.DOWN


def test_wrong_pin_is_not_retried_until_it_changes(
    own_pool: PoolFactory,
    loop_thread: LoopThread,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hwgated.hsm")
    pin_file = tmp_path / "pin"
    pin_file.write_text("999999-wrong\n")
    pool = own_pool(wait=False, pin_file=str(pin_file), backoff_initial=0.05, backoff_max=0.2)
    assert loop_thread.run(pool.wait_ready(30)) is False
    assert pool.state is PoolState.DOWN
    with pytest.raises(HsmLoginFailed) as refused:
        loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))
    assert refused.value.reason == "HSM_LOGIN_FAILED"
    loop_thread.run(eventually(lambda: pool.start_failures >= 3, 30, "background retries"))
    assert pool.last_error is not None and "waiting for a new one" in pool.last_error.message
    # A corrected PIN file brings the pool back without a restart.
    pin_file.write_text(USER_PIN + "\n")
    loop_thread.run(eventually(lambda: pool.healthy, 30, "recovery with the new PIN"))
    assert loop_thread.run(pool.sign("ec-p256", SignAlgorithm.ECDSA_SHA256, DIGEST))
    assert "999999" not in caplog.text and USER_PIN not in caplog.text
    assert "PIN_INCORRECT" in caplog.text
