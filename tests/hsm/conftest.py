"""Fixtures: a private SoftHSM2 token with known test keys, and pools on a loop thread.

The token lives in a pytest temp dir; the workers find it through
``TokenConfig.env`` (SOFTHSM2_CONF), the way the daemon's config does it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hsm_support import (
    MODULE,
    SO_PIN,
    TOKEN_LABEL,
    USER_PIN,
    HsmTestToken,
    LoopThread,
    make_keys,
)

from hwgated.hsm import HsmPool, TokenConfig

if not (Path(MODULE).exists() and shutil.which("softhsm2-util")):
    pytest.skip("SoftHSM2 is not installed", allow_module_level=True)


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> HsmTestToken:
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )
    pin_file = base / "user.pin"
    pin_file.write_text(USER_PIN + "\n")
    pin_file.chmod(0o600)
    config = TokenConfig(
        name="test",
        module=MODULE,
        token_label=TOKEN_LABEL,
        pin_file=str(pin_file),
        workers=2,
        op_timeout=5.0,
        env={"SOFTHSM2_CONF": str(conf)},
    )
    return HsmTestToken(config=config, conf_path=conf, **make_keys(conf))


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


def start_pool(
    loop_thread: LoopThread, config: TokenConfig, wait: bool = True, **kwargs: Any
) -> HsmPool:
    async def make() -> HsmPool:
        p = HsmPool(config, **kwargs)
        await p.start()
        if wait:
            await p.wait_ready(30)
        return p

    return loop_thread.run(make())


@pytest.fixture(scope="session")
def pool(token: HsmTestToken, loop_thread: LoopThread) -> Iterator[HsmPool]:
    """A 2-worker pool shared by the tests that do not break workers."""
    p = start_pool(loop_thread, token.config)
    yield p
    loop_thread.run(p.close())


@pytest.fixture
def own_pool(token: HsmTestToken, loop_thread: LoopThread) -> Iterator[Callable[..., HsmPool]]:
    """Factory for pools a test may damage (config changes as keywords); closed after it."""
    made: list[HsmPool] = []
    pool_options = ("pipeline_depth", "backoff_initial", "backoff_max", "start_timeout")

    def factory(wait: bool = True, **changes: Any) -> HsmPool:
        kwargs = {k: changes.pop(k) for k in pool_options if k in changes}
        p = start_pool(loop_thread, replace(token.config, **changes), wait=wait, **kwargs)
        made.append(p)
        return p

    yield factory
    for p in made:
        loop_thread.run(p.close())
