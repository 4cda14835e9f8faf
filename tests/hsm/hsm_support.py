"""Helpers for the HSM tests: the test token's layout, key creation, a loop thread.

Key creation runs in a spawned child process with its own SOFTHSM2_CONF so
this pytest process never loads SoftHSM itself (another test directory may
have initialized it with a different token directory).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hwgate_testbed.timing import scaled
from hwgated.hsm import TokenConfig

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "hwgate-test"
USER_PIN = "4711-test"
SO_PIN = "0815-so"

T = TypeVar("T")


@dataclass(frozen=True)
class HsmTestToken:
    """Where the token is and the secret values the tests use to recompute results."""

    config: TokenConfig
    conf_path: Path
    hmac_key: bytes
    aes_master_value: bytes
    ecdh_private_value: bytes
    rsa_id: bytes


class LoopThread:
    """One asyncio loop in a thread, so a pool can serve many tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def make_keys(conf_path: Path) -> dict[str, bytes]:
    """Create the test keys in a child process; returns the values tests may know."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, bytes] = pool.apply(_make_keys, (str(conf_path),))
    return result


def _make_keys(conf_path: str) -> dict[str, bytes]:
    os.environ["SOFTHSM2_CONF"] = conf_path
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    tok = pkcs11.lib(MODULE).get_token(token_label=TOKEN_LABEL)
    hmac_key = bytes(range(32))
    master = bytes(range(100, 132))
    rsa_id = bytes.fromhex("0102")
    with tok.open(rw=True, user_pin=USER_PIN) as session:
        ec_params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        ec_params.generate_keypair(store=True, label="ec-p256", id=b"\x01")
        _, ecdh = ec_params.generate_keypair(
            store=True,
            label="ecdh-p256",
            id=b"\x03",
            private_template={
                Attribute.SENSITIVE: False,
                Attribute.EXTRACTABLE: True,
                Attribute.DERIVE: True,
            },
        )
        session.generate_keypair(KeyType.RSA, 2048, store=True, label="rsa-2048", id=rsa_id)
        session.generate_key(
            KeyType.AES,
            256,
            store=True,
            label="aes-master",
            id=b"\x04",
            template={Attribute.DERIVE: True, Attribute.EXTRACTABLE: False},
        )
        for label, key_type, value in (
            ("aes-master-x", KeyType.AES, master),
            ("hmac-key", KeyType.GENERIC_SECRET, hmac_key),
        ):
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: key_type,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.LABEL: label,
                    Attribute.VALUE: value,
                    Attribute.SENSITIVE: False,
                    Attribute.EXTRACTABLE: True,
                    Attribute.DERIVE: True,
                    Attribute.SIGN: True,
                    Attribute.VERIFY: True,
                    Attribute.ENCRYPT: True,
                }
            )
        ecdh_value = bytes(ecdh[Attribute.VALUE])
    return {
        "hmac_key": hmac_key,
        "aes_master_value": master,
        "ecdh_private_value": ecdh_value,
        "rsa_id": rsa_id,
    }


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``predicate()`` holds, failing the test after ``timeout`` seconds
    (scaled for load). A poll: the pool offers nothing to subscribe to."""
    deadline = time.monotonic() + scaled(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
